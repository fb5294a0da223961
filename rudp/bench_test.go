package rudp

import (
	"context"
	"net"
	"slices"
	"sync"
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
// BenchmarkRoundTrip/raw vs /rudp: p50-ns is the median round trip;
// BenchmarkRoundTripInterleaved alternates the two and reports the ratio.
// BenchmarkOneWay256/raw vs /rudp: msgs/s of 256-byte messages;
// BenchmarkOneWayInterleaved alternates bursts of both and reports the ratio
// (a raw datagram lost on loopback makes its burst wait 200ms: rare with
// the 4 MiB receive buffer, and it only makes raw look slower).
// BenchmarkGoodput/loss0 vs /loss10: MB/s of 64 KiB messages;
// BenchmarkGoodputInterleaved alternates the two and reports the ratio.

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

// BenchmarkRoundTripInterleaved alternates one raw UDP ping-pong and one
// rudp Call per iteration, so both see the same machine load, and reports
// both medians and their ratio.
func BenchmarkRoundTripInterleaved(b *testing.B) {
	msg := make([]byte, 256)
	rawSrv, rawCli := benchSocket(b), benchSocket(b)
	defer rawCli.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := rawSrv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			rawSrv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	defer rawSrv.Close()
	rawTo := addrPortOf(rawSrv.LocalAddr())
	srv := start(b, benchSocket(b), testConfig(b, 1, echo))
	cli := start(b, benchSocket(b), testConfig(b, 2, nil))
	ctx := context.Background()
	if _, err := cli.Call(ctx, srv.AddrPort(), msg); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 2048)
	var raw, rel []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := rawCli.WriteToUDPAddrPort(msg, rawTo); err != nil {
			b.Fatal(err)
		}
		if _, _, err := rawCli.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := cli.Call(ctx, srv.AddrPort(), msg); err != nil {
			b.Fatal(err)
		}
		raw, rel = append(raw, t1.Sub(t0)), append(rel, time.Since(t1))
	}
	slices.Sort(raw)
	slices.Sort(rel)
	if len(raw) > 0 {
		r, q := raw[len(raw)/2], rel[len(rel)/2]
		b.ReportMetric(float64(r.Nanoseconds()), "raw-p50-ns")
		b.ReportMetric(float64(q.Nanoseconds()), "rudp-p50-ns")
		b.ReportMetric(float64(q)/float64(r), "ratio")
	}
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
	cs, ss := cli.Stats(), srv.Stats()
	b.ReportMetric(float64(cs.DatagramsSent+ss.DatagramsSent)/float64(max(1, cs.MessagesSent)), "dgrams/call")
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

// BenchmarkOneWayInterleaved alternates bursts of 2000 raw 256-byte
// datagrams and 2000 rudp Sends (64 concurrent senders) per iteration, so
// both see the same machine load, and reports both rates and their ratio.
func BenchmarkOneWayInterleaved(b *testing.B) {
	const burst, senders = 2000, 64
	msg := make([]byte, 256)
	rawSrv, rawCli := benchSocket(b), benchSocket(b)
	defer rawCli.Close()
	var rawGot atomic.Int64
	arrived := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := rawSrv.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			if rawGot.Add(1)%burst == 0 {
				arrived <- struct{}{}
			}
		}
	}()
	defer rawSrv.Close()
	rawTo := addrPortOf(rawSrv.LocalAddr())
	srv := start(b, benchSocket(b), testConfig(b, 1, nil))
	cli := start(b, benchSocket(b), testConfig(b, 2, nil))
	ctx := context.Background()
	if err := cli.Send(ctx, srv.AddrPort(), msg); err != nil {
		b.Fatal(err)
	}
	var rawTime, relTime time.Duration
	var rawMsgs int64
	for b.Loop() {
		before := rawGot.Load()
		t0 := time.Now()
		for range burst {
			if _, err := rawCli.WriteToUDPAddrPort(msg, rawTo); err != nil {
				b.Fatal(err)
			}
		}
		select { // all arrived, or count what did after a pause (losses)
		case <-arrived:
		case <-time.After(200 * time.Millisecond):
		}
		rawTime += time.Since(t0)
		rawMsgs += rawGot.Load() - before
		rawGot.Store(((rawGot.Load() + burst - 1) / burst) * burst) // realign the burst counter
		select {
		case <-arrived:
		default:
		}

		t1 := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				for next.Add(1) <= burst {
					if err := cli.Send(ctx, srv.AddrPort(), msg); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		relTime += time.Since(t1)
	}
	rawRate := float64(rawMsgs) / rawTime.Seconds()
	relRate := float64(b.N*burst) / relTime.Seconds()
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(relRate, "rudp-msgs/s")
	b.ReportMetric(relRate/rawRate, "ratio")
}

// BenchmarkGoodputInterleaved alternates bursts of 32 messages of 64 KiB (4
// concurrent senders) over a loss-free pair and over a pair whose links
// drop 10% of datagrams in both directions, and reports both goodputs and
// their ratio.
func BenchmarkGoodputInterleaved(b *testing.B) {
	const burst, senders = 32, 4
	msg := make([]byte, 64<<10)
	type pair struct {
		cli, srv *Endpoint
		bytes    int64
		took     time.Duration
	}
	mk := func(loss float64, seed uint64) *pair {
		n := faultnet.New(seed)
		b.Cleanup(func() { n.Close() })
		n.SetDefault(faultnet.Link{Drop: loss})
		p := &pair{
			srv: start(b, n.Wrap(benchSocket(b)), testConfig(b, seed, nil)),
			cli: start(b, n.Wrap(benchSocket(b)), testConfig(b, seed+1, nil)),
		}
		if err := p.cli.Send(context.Background(), p.srv.AddrPort(), msg); err != nil {
			b.Fatal(err)
		}
		return p
	}
	clean, lossy := mk(0, 1), mk(0.1, 3)
	run := func(p *pair) {
		t0 := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				for next.Add(1) <= burst {
					if err := p.cli.Send(context.Background(), p.srv.AddrPort(), msg); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		p.took += time.Since(t0)
		p.bytes += burst * int64(len(msg))
	}
	for b.Loop() {
		run(clean)
		run(lossy)
	}
	g0 := float64(clean.bytes) / clean.took.Seconds() / 1e6
	g10 := float64(lossy.bytes) / lossy.took.Seconds() / 1e6
	b.ReportMetric(g0, "loss0-MB/s")
	b.ReportMetric(g10, "loss10-MB/s")
	b.ReportMetric(g10/g0, "ratio")
}
