package kvsim

import (
	"fmt"
	"slices"

	"github.com/anishathalye/porcupine"
)

// OpKind is a client operation.
type OpKind uint8

// The operations clients issue.
const (
	// OpGet reads a key (through ReadIndex, or through the log).
	OpGet OpKind = iota + 1
	// OpPut writes a key.
	OpPut
	// OpDelete deletes a key; the answer says whether it existed.
	OpDelete
	// OpCAS writes Value if the key exists and holds Expect
	// (kvstore.CompareValue, then kvstore.OpPut).
	OpCAS
)

func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpCAS:
		return "cas"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Input is one client operation as the history records it.
type Input struct {
	Op     OpKind
	Key    string
	Value  string // put and cas
	Expect string // cas
}

// Output is the answer a client got. Unknown marks a write whose outcome
// the client never learned (it timed out): it may have taken effect or
// not, and its Return is math.MaxInt64.
type Output struct {
	Unknown bool
	Found   bool   // get: the key exists
	Value   string // get: its value
	OK      bool   // cas: the compare held and the value was written
	Deleted uint64 // delete: keys deleted (0 or 1)
}

// kvState is one key's state in the model: absent, or present with a value.
type kvState struct {
	Exists bool
	Value  string
}

// Model is the porcupine model of the store as clients see it: every key a
// register, checked one key at a time (Partition), with put, get, delete
// and compare-and-swap exactly as kvstore applies them: put creates or
// overwrites; delete removes and answers 1 when the key existed, else 0;
// cas (compare the value) holds only when the key exists with that value.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(Input).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(kvState), input.(Input), output.(Output)
		switch in.Op {
		case OpGet:
			if out.Unknown {
				return true, st
			}
			return out.Found == st.Exists && (!out.Found || out.Value == st.Value), st
		case OpPut:
			return true, kvState{Exists: true, Value: in.Value}
		case OpDelete:
			var n uint64
			if st.Exists {
				n = 1
			}
			return out.Unknown || out.Deleted == n, kvState{}
		case OpCAS:
			holds := st.Exists && st.Value == in.Expect
			if !out.Unknown && out.OK != holds {
				return false, st
			}
			if holds {
				return true, kvState{Exists: true, Value: in.Value}
			}
			return true, st
		}
		return false, st
	},
	Equal: func(a, b any) bool { return a.(kvState) == b.(kvState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		res := ""
		switch in.Op {
		case OpGet:
			res = "missing"
			if out.Found {
				res = fmt.Sprintf("%q", out.Value)
			}
		case OpPut:
			res = "ok"
		case OpDelete:
			res = fmt.Sprint(out.Deleted)
		case OpCAS:
			res = fmt.Sprint(out.OK)
		}
		if out.Unknown {
			res = "?"
		}
		switch in.Op {
		case OpPut:
			return fmt.Sprintf("put(%s, %q) -> %s", in.Key, in.Value, res)
		case OpCAS:
			return fmt.Sprintf("cas(%s, %q -> %q) -> %s", in.Key, in.Expect, in.Value, res)
		}
		return fmt.Sprintf("%v(%s) -> %s", in.Op, in.Key, res)
	},
	DescribeState: func(state any) string {
		st := state.(kvState)
		if !st.Exists {
			return "missing"
		}
		return fmt.Sprintf("%q", st.Value)
	},
}
