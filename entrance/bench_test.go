package entrance

import (
	"context"
	"fmt"
	"testing"

	"github.com/raftkv/raftkv/internal/proto"
)

// BenchmarkJoin measures admissions (each one persisted with an fsync).
func BenchmarkJoin(b *testing.B) {
	e, err := New(Config{DataDir: b.TempDir(), MaxNodes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	i := 0
	for b.Loop() {
		i++
		if r := join(e, fmt.Sprintf("n%d", i), fmt.Sprintf("127.0.%d.%d:7700", i/250%250, i%250+1), 0); r.Code != proto.CodeOK {
			b.Fatalf("join %d: %+v", i, r)
		}
	}
}

// BenchmarkReport measures a steady-state leader report of a 5-node
// cluster (nothing structural changes: no disk write).
func BenchmarkReport(b *testing.B) {
	e, err := New(Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var ms []proto.Member
	for i := range 5 {
		ms = append(ms, proto.Member{ID: uint64(i + 1), Name: fmt.Sprintf("n%d", i+1), Addr: fmt.Sprintf("127.0.0.1:%d", 7701+i), Active: true})
	}
	rep := proto.LeaderReport{ID: 1, Name: "n1", Addr: "127.0.0.1:7701", Term: 2, Members: ms}
	payload := proto.MustEncode(proto.KindLeaderReport, &rep)
	for b.Loop() {
		e.Handle(context.Background(), src, payload)
	}
}

// BenchmarkListPeers measures a list-peers answer for 5 nodes.
func BenchmarkListPeers(b *testing.B) {
	e, err := New(Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for i := range 5 {
		join(e, fmt.Sprintf("n%d", i+1), fmt.Sprintf("127.0.0.1:%d", 7701+i), 0)
	}
	payload := proto.MustEncode(proto.KindListPeers, &proto.ListPeersRequest{})
	for b.Loop() {
		if len(e.Handle(context.Background(), src, payload)) == 0 {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkPong measures taking in one pong (the steady state: no leader
// change, nothing written).
func BenchmarkPong(b *testing.B) {
	e, err := New(Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	f := fakeCluster(5, 0)
	e.Report(f.report(), src)
	pong := proto.Pong{ID: 3, Role: "follower", Term: 2, Leader: 1}
	for b.Loop() {
		e.Pong(3, pong)
	}
}

// BenchmarkPingRound measures choosing one round of ping targets among
// 1000 registered nodes (the pings themselves are rudp calls).
func BenchmarkPingRound(b *testing.B) {
	e, err := New(Config{DataDir: b.TempDir(), MaxNodes: 2000})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for i := range 1000 {
		join(e, fmt.Sprintf("n%d", i+1), fmt.Sprintf("127.0.%d.%d:7700", i/250, i%250+1), 0)
	}
	for b.Loop() {
		tgs := e.pingTargets()
		if len(tgs) != 1000 {
			b.Fatalf("%d targets", len(tgs))
		}
		for _, tg := range tgs {
			e.pingSkipped(tg)
		}
	}
}
