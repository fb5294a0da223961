package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/internal/discovery"
	"github.com/raftkv/raftkv/rudp"
)

// startResponder runs a discovery responder for the entrance at ent on an
// ephemeral port of 0.0.0.0 (SO_REUSEADDR) and returns the port.
func startResponder(t *testing.T, ent string) int {
	t.Helper()
	pc, err := rudp.ListenUDP(t.Context(), "udp4", "0.0.0.0:0", rudp.SocketOptions{ReuseAddr: true, ReadBuffer: 64 << 10, WriteBuffer: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	r, err := discovery.NewResponder(discovery.ResponderConfig{Addr: netip.MustParseAddrPort(ent), PacketConn: pc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(context.Background()) })
	t.Cleanup(func() { r.Close(); wg.Wait() })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// TestDiscoveryAndMetrics starts raftd without --entrance: it finds the
// entrance by broadcast on loopback (127.255.255.255), is admitted and
// bootstraps; /metrics shows it leading; restarted, it serves at once and
// rejoins through the entrance it finds again.
func TestDiscoveryAndMetrics(t *testing.T) {
	ent := startEntrance(t)
	port := startResponder(t, ent)
	dir := t.TempDir()
	args := []string{"--discovery-addr", "127.255.255.255", "--discovery-port", fmt.Sprint(port), "--http", "127.0.0.1:0"}
	d := startDaemon(t, "n1", dir, nil, args...)
	defer func() {
		if d != nil {
			d.stop()
		}
	}()
	log := d.stderr.String()
	for _, want := range []string{"found the entrance", "entrance=" + ent, "admitted", "bootstrapped a one-node cluster"} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	waitFor(t, "n1 to lead", d.node.IsLeader)

	scrape := func() string {
		resp, err := http.Get("http://" + d.http.String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
		}
		return string(b)
	}
	waitFor(t, "/metrics to show the leader", func() bool {
		m := scrape()
		return strings.Contains(m, "\nraftkv_server_is_leader 1\n") && strings.Contains(m, "\nraftkv_server_has_leader 1\n")
	})
	m := scrape()
	for _, want := range []string{`raftkv_build_info{component="raftd"`, "raftkv_rudp_datagrams_sent_total ",
		`raftkv_rudp_dropped_total{reason="bad_mac"} 0`, "raftkv_disk_log_fsync_duration_seconds_bucket{le=\"0.001\"}",
		"raftkv_server_leader_changes_seen_total 1", "go_goroutines ", "process_start_time_seconds "} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if code := d.stop(); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, d.stderr.String())
	}
	d = startDaemon(t, "n1", dir, nil, args...)
	waitFor(t, "n1 to rejoin", func() bool { return strings.Contains(d.stderr.String(), "rejoined") })
	if !strings.Contains(d.stderr.String(), "found the entrance") {
		t.Fatalf("restarted node did not log the entrance it found:\n%s", d.stderr.String())
	}
}
