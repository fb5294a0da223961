package node

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// newTestClient returns a real client.Client that knows every node of c.
func (c *cluster) client(t *testing.T) *client.Client {
	t.Helper()
	var eps []string
	for _, tn := range c.nodes {
		eps = append(eps, tn.addr.String())
	}
	cl, err := client.New(t.Context(), client.Config{Endpoints: eps, Timeout: 20 * time.Second, AttemptTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// TestRangeOverOneMessage: a prefix holding more than proto.MaxMessageBytes
// of key-values reads back whole, in order, through the real client.
func TestRangeOverOneMessage(t *testing.T) {
	c := newCluster(t, 3, func(c *cluster) { c.tune = func(cfg *Config) { cfg.TickInterval = 100 * time.Millisecond } })
	cl := c.client(t)
	ctx := context.Background()
	var want []string
	for i := range 3 {
		k := fmt.Sprintf("big/%d", i)
		if _, err := cl.Put(ctx, k, bytes.Repeat([]byte{byte('a' + i)}, 1<<20)); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	res, err := cl.Get(ctx, "big/", client.GetOptions{Prefix: true})
	if err != nil {
		t.Fatalf("get big/ --prefix: %v", err)
	}
	if len(res.KVs) != len(want) {
		t.Fatalf("got %d keys, want %d", len(res.KVs), len(want))
	}
}
