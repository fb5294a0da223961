package rudp

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/faultnet"
)

// The benchmarks run on loopback sockets and measure the reference (raw
// UDP) in the same run, as sub-benchmarks side by side:
//
//	go test -run '^$' -bench . -benchtime 2s ./rudp
//
// BenchmarkRoundTrip/raw vs /rudp: p50-ns is the median round trip.
// BenchmarkOneWay256/raw vs /rudp: msgs/s of 256-byte messages.
// BenchmarkGoodput/loss0 vs /loss10: MB/s of 64 KiB messages.

func benchSocket(b *testing.B) *net.UDPConn {
	b.Helper()
	pc, err := ListenUDP(context.Background(), "udp4", "127.0.0.1:0", SocketOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return pc
}

func reportP50(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	msg := make([]byte, 256)
	b.Run("raw", func(b *testing.B) {
		srv, cli := benchSocket(b), benchSocket(b)
		defer cli.Close()
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := srv.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				srv.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
		defer srv.Close()
		to := addrPortOf(srv.LocalAddr())
		buf := make([]byte, 2048)
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			t0 := time.Now()
			if _, err := cli.WriteToUDPAddrPort(msg, to); err != nil {
				b.Fatal(err)
			}
			if _, _, err := cli.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		reportP50(b, lat)
	})
	b.Run("rudp", func(b *testing.B) {
		benchCall(b, start(b, benchSocket(b), testConfig(b, 1, echo)), msg)
	})
}

func benchCall(b *testing.B, srv *Endpoint, msg []byte) {
	cli := start(b, benchSocket(b), testConfig(b, 2, nil))
	ctx := context.Background()
	if _, err := cli.Call(ctx, srv.AddrPort(), msg); err != nil { // hello round trip
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t0 := time.Now()
		if _, err := cli.Call(ctx, srv.AddrPort(), msg); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	reportP50(b, lat)
}

func BenchmarkOneWay256(b *testing.B) {
	msg := make([]byte, 256)
	b.Run("raw", func(b *testing.B) {
		// The sender writes as fast as it can; the rate is what the
		// receiver got per second until its last datagram.
		srv, cli := benchSocket(b), benchSocket(b)
		defer cli.Close()
		var got atomic.Int64
		var last atomic.Int64 // unix nanos of the last datagram received
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 2048)
			for {
				if _, _, err := srv.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
				got.Add(1)
				last.Store(time.Now().UnixNano())
			}
		}()
		to := addrPortOf(srv.LocalAddr())
		t0 := time.Now()
		sent := 0
		for b.Loop() {
			if _, err := cli.WriteToUDPAddrPort(msg, to); err != nil {
				b.Fatal(err)
			}
			sent++
		}
		for prev := int64(-1); got.Load() != prev; { // until the receiver is idle
			prev = got.Load()
			time.Sleep(20 * time.Millisecond)
		}
		srv.Close()
		<-done
		el := time.Unix(0, last.Load()).Sub(t0)
		b.ReportMetric(float64(got.Load())/el.Seconds(), "msgs/s")
		b.ReportMetric(100*float64(sent-int(got.Load()))/float64(sent), "lost-%")
	})
	b.Run("rudp", func(b *testing.B) {
		var got atomic.Int64
		srv := start(b, benchSocket(b), testConfig(b, 1, func(context.Context, Message) []byte { got.Add(1); return nil }))
		cli := start(b, benchSocket(b), testConfig(b, 2, nil))
		ctx := context.Background()
		if err := cli.Send(ctx, srv.AddrPort(), msg); err != nil {
			b.Fatal(err)
		}
		got.Store(0)
		t0 := time.Now()
		b.SetParallelism(64) // Send waits for its ack: keep many in flight
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := cli.Send(ctx, srv.AddrPort(), msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(got.Load())/time.Since(t0).Seconds(), "msgs/s")
		cs, ss := cli.Stats(), srv.Stats()
		b.ReportMetric(float64(cs.DatagramsSent)/float64(max(1, cs.MessagesSent)), "data-dgrams/msg")
		b.ReportMetric(float64(ss.DatagramsSent)/float64(max(1, cs.MessagesSent)), "ack-dgrams/msg")
	})
}

func BenchmarkGoodput(b *testing.B) {
	for _, loss := range []float64{0, 0.1} {
		name := "loss0"
		if loss > 0 {
			name = "loss10"
		}
		b.Run(name, func(b *testing.B) {
			n := faultnet.New(1)
			defer n.Close()
			n.SetDefault(faultnet.Link{Drop: loss})
			srv := start(b, n.Wrap(benchSocket(b)), testConfig(b, 1, nil))
			cli := start(b, n.Wrap(benchSocket(b)), testConfig(b, 2, nil))
			ctx := context.Background()
			msg := make([]byte, 64<<10)
			if err := cli.Send(ctx, srv.AddrPort(), msg); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(msg)))
			t0 := time.Now()
			var total atomic.Int64
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := cli.Send(ctx, srv.AddrPort(), msg); err != nil {
						b.Error(err)
						return
					}
					total.Add(int64(len(msg)))
				}
			})
			b.ReportMetric(float64(total.Load())/time.Since(t0).Seconds()/1e6, "MB/s")
			s := cli.Stats()
			b.ReportMetric(float64(s.Retransmits)/float64(max(1, s.DatagramsSent)), "retx/dgram")
		})
	}
}
