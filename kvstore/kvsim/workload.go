package kvsim

import (
	"fmt"

	"github.com/raftkv/raftkv/node/raft/raftsim"
)

// Workload drives the clients with random operations: 40% get, 25% put,
// 20% cas (mostly expecting the latest value seen, so many succeed), 15%
// delete, over a small key space so that clients contend.
type Workload struct {
	// Keys is the size of the key space k0..k<Keys-1> (0 = 3).
	Keys int
	// Think is the longest pause between a client's operations (0 = 10 ms).
	Think raftsim.Time
	// Ops is the number of operations per client (0 = until StopClients).
	Ops int
}

// Start starts every client on w.
func (s *Sim) Start(w Workload) {
	if w.Keys == 0 {
		w.Keys = 3
	}
	if w.Think == 0 {
		w.Think = 10
	}
	seen := map[string]string{}
	for _, c := range s.clients {
		n := 0
		var loop func()
		loop = func() {
			if s.stopped || (w.Ops > 0 && n >= w.Ops) {
				return
			}
			s.C.After(raftsim.Time(s.C.Rand().Int64N(int64(w.Think))+1), "", func() {
				if s.stopped || c.Busy() {
					return
				}
				n++
				in := s.randomInput(c, n, w.Keys, seen)
				c.Do(in, func(out Output) {
					switch {
					case out.Unknown:
					case in.Op == OpGet && out.Found:
						seen[in.Key] = out.Value
					case in.Op == OpPut || (in.Op == OpCAS && out.OK):
						seen[in.Key] = in.Value
					}
					loop()
				})
			})
		}
		loop()
	}
}

func (s *Sim) randomInput(c *Client, n, keys int, seen map[string]string) Input {
	rng := s.C.Rand()
	in := Input{Key: fmt.Sprintf("k%d", rng.IntN(keys)), Value: fmt.Sprintf("c%d.%d", c.ID, n)}
	switch r := rng.IntN(100); {
	case r < 40:
		in.Op, in.Value = OpGet, ""
	case r < 65:
		in.Op = OpPut
	case r < 85:
		in.Op = OpCAS
		in.Expect = seen[in.Key]
		if rng.IntN(4) == 0 {
			in.Expect = fmt.Sprintf("c%d.%d", rng.IntN(len(s.clients)), rng.IntN(n+1))
		}
	default:
		in.Op, in.Value = OpDelete, ""
	}
	return in
}
