package raftsim_test

import (
	"encoding/binary"
	"fmt"

	"github.com/raftkv/raftkv/node/raft"
	"github.com/raftkv/raftkv/node/raft/raftsim"
)

// counter is a toy state machine: every command adds its length.
type counter struct{ sum uint64 }

func (c *counter) Apply(e raft.Entry) []byte {
	c.sum += uint64(len(e.Data))
	return binary.BigEndian.AppendUint64(nil, c.sum)
}
func (c *counter) Snapshot() []byte { return binary.BigEndian.AppendUint64(nil, c.sum) }
func (c *counter) Restore(b []byte) error {
	c.sum = 0
	if len(b) == 8 {
		c.sum = binary.BigEndian.Uint64(b)
	}
	return nil
}

// A state machine and a client plugged into a simulated cluster: the
// client writes through the leader, survives the leader's crash, and reads
// linearizably with ReadIndex.
func Example() {
	c, err := raftsim.New(raftsim.Config{
		Seed: 1, Nodes: 3, SnapshotEvery: 2,
		NewStateMachine: func() raftsim.StateMachine { return &counter{} },
	})
	if err != nil {
		panic(err)
	}
	lead := c.WaitLeader(10 * c.ElectionTimeout())
	for _, cmd := range []string{"a", "bb", "ccc"} {
		var done bool
		_ = c.Propose(lead, []byte(cmd), func(r raftsim.ProposeResult) {
			done = true
			fmt.Printf("%q applied, sum=%d\n", cmd, binary.BigEndian.Uint64(r.Result))
		})
		c.RunUntil(func() bool { return done }, c.ElectionTimeout())
	}
	c.Crash(lead)
	newLead := c.WaitLeader(10 * c.ElectionTimeout())
	var read bool
	_ = c.ReadIndex(newLead, func(r raftsim.ReadResult) {
		read = true
		fmt.Printf("new leader reads sum=%d\n", r.SM.(*counter).sum)
	})
	c.RunUntil(func() bool { return read }, 4*c.ElectionTimeout())
	fmt.Println("new leader differs:", newLead != lead, "violations:", c.Err())
	// Output:
	// "a" applied, sum=1
	// "bb" applied, sum=3
	// "ccc" applied, sum=6
	// new leader reads sum=6
	// new leader differs: true violations: <nil>
}
