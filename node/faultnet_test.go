package node

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/faultnet"
	"github.com/raftkv/raftkv/internal/proto"
)

// TestFaultyNetwork runs a cluster whose sockets lose, duplicate, corrupt
// and reorder datagrams: rudp hides the faults, writes retried with the
// same session are applied once, and every replica ends with the same data.
func TestFaultyNetwork(t *testing.T) {
	fn := faultnet.New(0x5eed)
	t.Cleanup(func() { fn.Close() })
	fn.SetDefault(faultnet.Link{Drop: 0.1, Dup: 0.1, Corrupt: 0.01, Reorder: 0.2, ReorderDelay: 2 * time.Millisecond})
	c := newCluster(t, 3, func(c *cluster) {
		c.wrap = func(pc net.PacketConn) net.PacketConn { return fn.Wrap(pc) }
	})
	const writes = 60
	for i := range writes {
		// c.do retries with the same (ClientID, Seq) on timeouts and
		// redirects: each write is applied at most once.
		mustOK(t, c.do(put(91, uint64(i+1), fmt.Sprintf("f%02d", i), fmt.Sprint(i))))
	}
	for i := range writes {
		kv := mustOK(t, c.do(get(fmt.Sprintf("f%02d", i)))).KVs[0]
		if string(kv.Value) != fmt.Sprint(i) || kv.Version != 1 {
			t.Fatalf("f%02d = %q version %d", i, kv.Value, kv.Version)
		}
	}
	for _, tn := range c.nodes {
		waitFor(t, tn.name+" applies every write", func() bool {
			v, code := localValue(tn, fmt.Sprintf("f%02d", writes-1))
			return code == proto.CodeOK && v == fmt.Sprint(writes-1)
		})
	}
	st := fn.Stats()
	if st.Dropped == 0 || st.Duplicated == 0 || st.Reordered == 0 {
		t.Fatalf("the network injected no faults: %+v", st)
	}
}
