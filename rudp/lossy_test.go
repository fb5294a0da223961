package rudp

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftkv/raftkv/internal/faultnet"
)

var hashSeed = maphash.MakeSeed()

// expectations is a multiset of messages that must each arrive exactly once.
type expectations struct {
	mu      sync.Mutex
	pending map[string]int // key: from|to|sha256(payload)
	errs    []string
}

func msgKey(from, to netip.AddrPort, payload []byte) string {
	return fmt.Sprintf("%v|%v|%d|%x", from, to, len(payload), maphash.Bytes(hashSeed, payload))
}

func (x *expectations) expect(from, to netip.AddrPort, payload []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.pending[msgKey(from, to, payload)]++
}

func (x *expectations) arrived(from, to netip.AddrPort, payload []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := msgKey(from, to, payload)
	if x.pending[k] == 0 {
		x.errs = append(x.errs, fmt.Sprintf("unexpected, duplicated or damaged message of %d bytes from %v to %v", len(payload), from, to))
		return
	}
	x.pending[k]--
	if x.pending[k] == 0 {
		delete(x.pending, k)
	}
}

// lossySize returns the size of the i-th message of a stream: mostly small
// (up to 1 KiB, every 7th exactly 1 byte), every 40th 1 to 16 KiB, every
// 400th 64 to 256 KiB, and the first exactly 256 KiB.
func lossySize(r *rand.Rand, i int) int {
	switch {
	case i == 0:
		return 256 << 10
	case i%400 == 200:
		return 64<<10 + r.IntN(192<<10+1)
	case i%40 == 20:
		return 1<<10 + r.IntN(15<<10)
	case i%7 == 0:
		return 1
	}
	return 1 + r.IntN(1024)
}

// TestLossyExchange has three endpoints exchange 10,002 messages of 1 B to
// 256 KiB over links with 30% loss, 10% duplication, reordering and
// corruption, and checks every message arrives exactly once and intact.
func TestLossyExchange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const perPair = 1667 // 3 endpoints * 2 peers * 1667 = 10,002 messages
		const senders = 12   // concurrent Send loops per (from, to) pair
		n := newNet(t, 0x5eed)
		n.SetDefault(faultnet.Link{Drop: 0.3, Dup: 0.1, Corrupt: 0.02, Reorder: 0.2, ReorderDelay: 3 * time.Millisecond, Jitter: 500 * time.Microsecond})
		x := &expectations{pending: make(map[string]int)}
		addrs := []netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:7000"),
			netip.MustParseAddrPort("127.0.0.2:7000"),
			netip.MustParseAddrPort("127.0.0.3:7000"),
		}
		eps := make([]*Endpoint, len(addrs))
		for i, a := range addrs {
			cfg := testConfig(t, uint64(i+1), func(_ context.Context, m Message) []byte {
				x.arrived(m.From, a, m.Payload)
				return nil
			})
			cfg.PeerTimeout = time.Minute // 30% loss each way: no spurious give-up
			cfg.ReassemblyTimeout = 2 * time.Minute
			eps[i] = start(t, listenMem(t, n, a.String()), cfg)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // virtual time
		defer cancel()
		var wg sync.WaitGroup
		var failed sync.Map
		for i := range eps {
			for j := range eps {
				if i == j {
					continue
				}
				for s := range senders {
					wg.Go(func() {
						r := rand.New(rand.NewPCG(uint64(i), uint64(j*100+s)))
						var seed [32]byte
						seed[0], seed[1], seed[2] = byte(i), byte(j), byte(s)
						fill := rand.NewChaCha8(seed)
						for k := s; k < perPair; k += senders {
							p := make([]byte, lossySize(r, k))
							fill.Read(p)
							x.expect(addrs[i], addrs[j], p)
							if err := eps[i].Send(ctx, addrs[j], p); err != nil {
								failed.Store(fmt.Sprintf("%d->%d #%d", i, j, k), err)
								return
							}
						}
					})
				}
			}
		}
		wg.Wait()
		failed.Range(func(k, v any) bool { t.Errorf("send %v: %v", k, v); return true })
		synctest.Wait() // acknowledged messages are in handlers' hands
		x.mu.Lock()
		defer x.mu.Unlock()
		for _, e := range x.errs[:min(len(x.errs), 10)] {
			t.Error(e)
		}
		if len(x.pending) != 0 {
			t.Errorf("%d messages acknowledged but never delivered", len(x.pending))
		}
		var total Stats
		for _, e := range eps {
			s := e.Stats()
			total.MessagesReceived += s.MessagesReceived
			total.Duplicates += s.Duplicates
			total.Retransmits += s.Retransmits
			total.DroppedBadMAC += s.DroppedBadMAC
			total.Unreachable += s.Unreachable
			if s.ReassemblyBytes != 0 {
				t.Errorf("endpoint %v still reserves %d reassembly bytes", e.AddrPort(), s.ReassemblyBytes)
			}
		}
		ns := n.Stats()
		t.Logf("network %+v; endpoints: received %d, duplicates %d, retransmits %d, bad MAC %d",
			ns, total.MessagesReceived, total.Duplicates, total.Retransmits, total.DroppedBadMAC)
		if total.MessagesReceived != 3*2*perPair {
			t.Errorf("delivered %d messages, want %d", total.MessagesReceived, 3*2*perPair)
		}
		if ns.Corrupted == 0 || total.DroppedBadMAC == 0 || total.Duplicates == 0 || ns.Reordered == 0 {
			t.Errorf("faults not exercised: corrupted %d, bad MAC %d, duplicates %d, reordered %d",
				ns.Corrupted, total.DroppedBadMAC, total.Duplicates, ns.Reordered)
		}
		if total.Unreachable != 0 {
			t.Errorf("%d messages given up", total.Unreachable)
		}
	})
}
