package rudp

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	n := newNet(t, 1)
	got := make(chan Message, 10)
	a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, echo))
	b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, func(ctx context.Context, m Message) []byte { got <- m; return append([]byte("re:"), m.Payload...) }))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Send(ctx, b.AddrPort(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	m := <-got
	if string(m.Payload) != "hello" || m.From != a.AddrPort() || m.NodeID != a.NodeID() {
		t.Fatalf("got %+v", m)
	}
	big := bytes.Repeat([]byte("0123456789"), 30000)
	r, err := a.Call(ctx, b.AddrPort(), big)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r, append([]byte("re:"), big...)) {
		t.Fatalf("reply of %d bytes", len(r))
	}
	t.Logf("a %+v\nb %+v", a.Stats(), b.Stats())
}

func TestSendToSelf(t *testing.T) {
	n := newNet(t, 11)
	got := make(chan Message, 1)
	a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, func(_ context.Context, m Message) []byte { got <- m; return []byte("me") }))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := a.Call(ctx, a.AddrPort(), []byte("self"))
	if err != nil || string(r) != "me" {
		t.Fatalf("Call to self = %q, %v", r, err)
	}
	if m := <-got; m.From != a.AddrPort() || m.NodeID != a.NodeID() {
		t.Fatalf("from %v node %x", m.From, m.NodeID)
	}
}
