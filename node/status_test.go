package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
)

// TestStatusLogSizeAndRudpCounters: Status reports the entries raft.db
// holds after compaction, raft.db's file size, and the rudp counters,
// including a junk datagram counted as dropped.
func TestStatusLogSizeAndRudpCounters(t *testing.T) {
	c := newCluster(t, 2, func(c *cluster) {
		c.tune = func(cfg *Config) { cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 20, 5 }
	})
	for i := range 60 {
		mustOK(t, c.do(put(91, uint64(i+1), fmt.Sprintf("k%02d", i), "v")))
	}
	lead := c.waitLeader()
	st, err := lead.n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot == 0 || st.LogEntries == 0 || st.LogEntries >= st.LastIndex {
		t.Fatalf("after 60 writes with SnapshotEntries 20: snapshot %d, log entries %d, last index %d; want a compacted log",
			st.Snapshot, st.LogEntries, st.LastIndex)
	}
	// Compaction keeps SnapshotCatchUpEntries behind the snapshot.
	if limit := st.LastIndex - st.Snapshot + 5; st.LogEntries > limit {
		t.Fatalf("log entries %d, want at most %d (last %d, snapshot %d)", st.LogEntries, limit, st.LastIndex, st.Snapshot)
	}
	fi, err := os.Stat(lead.n.rlog.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.LogBytes <= 0 || st.LogBytes != fi.Size() {
		t.Fatalf("log bytes %d, raft.db is %d bytes", st.LogBytes, fi.Size())
	}
	if st.RudpSent == 0 || st.RudpReceived == 0 {
		t.Fatalf("rudp counters sent %d received %d after replicating 60 writes", st.RudpSent, st.RudpReceived)
	}

	// A datagram that is not rudp (no valid tag) is dropped and counted.
	other := c.node(2)
	if other == lead {
		other = c.node(1)
	}
	before, err := other.n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(other.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	junk := make([]byte, 64)
	for i := range junk {
		junk[i] = byte(i*7 + 1)
	}
	waitFor(t, "the junk datagram counted as dropped", func() bool {
		if _, err := conn.Write(junk); err != nil {
			t.Fatal(err)
		}
		st, err := other.n.Status(context.Background())
		return err == nil && st.RudpDropped > before.RudpDropped && st.RudpReceived > before.RudpReceived
	})
	mustOK(t, c.do(get("k59")))
}
