package kvstore

import (
	"fmt"

	"github.com/raftkv/raftkv/internal/codec"
	"github.com/vmihailenco/msgpack/v5"
)

// Op names a command. Commands that change the store are applied through
// the Raft log; OpRange is a read that may also go through the log
// (the simplest linearizable read).
//
// ONLY APPEND: values are persisted in the Raft log.
type Op uint8

const (
	// OpNoop changes nothing. With a ClientID it refreshes the client's
	// session (a keep-alive), opening it when Seq is 1.
	OpNoop Op = 0
	// OpPut sets Key to Value.
	OpPut Op = 1
	// OpDelete deletes Key.
	OpDelete Op = 2
	// OpDeletePrefix deletes every key that starts with Key (every key
	// when Key is empty).
	OpDeletePrefix Op = 3
	// OpCAS checks Compare against Key and, when it holds, does Then
	// (OpPut with Value, or OpDelete); otherwise ErrCompareFailed.
	OpCAS Op = 4
	// OpCompact drops history below revision Rev.
	OpCompact Op = 5
	// OpRange reads like Store.Range (Key, End, Prefix, Limit, Rev).
	// It is never deduplicated and changes nothing.
	OpRange Op = 6
	// OpRegisterSession opened a session whose id was the entry's index
	// (store format 1). Retired: sessions are keyed by Command.ClientID
	// and open themselves, so Apply refuses it with ErrBadCommand. The
	// value stays reserved.
	OpRegisterSession Op = 7
	// OpCloseSession closes the session of the command's ClientID.
	OpCloseSession Op = 8
)

var opNames = [...]string{"noop", "put", "delete", "delete-prefix", "cas", "compact", "range", "register-session", "close-session"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// CompareTarget names what a compare-and-swap compares.
//
// ONLY APPEND: values are persisted in the Raft log.
type CompareTarget uint8

const (
	// CompareValue holds when the key exists and its value equals
	// Compare.Value.
	CompareValue CompareTarget = 0
	// CompareModRev holds when the key's mod revision equals Compare.Rev
	// (0: the key does not exist).
	CompareModRev CompareTarget = 1
	// CompareVersion holds when the key's version equals Compare.Rev
	// (0: the key does not exist).
	CompareVersion CompareTarget = 2
	// CompareCreateRev holds when the key's create revision equals
	// Compare.Rev (0: the key does not exist).
	CompareCreateRev CompareTarget = 3
	// CompareExists holds when the key exists.
	CompareExists CompareTarget = 4
)

// Compare is the condition of a compare-and-swap.
type Compare struct {
	Target CompareTarget `msgpack:"t"`
	Value  []byte        `msgpack:"v,omitempty"`
	Rev    uint64        `msgpack:"r,omitempty"`
}

// Command is one state-machine command, the Data of a Raft log entry.
// Which fields matter depends on Op; the rest stay zero.
type Command struct {
	Op Op `msgpack:"o"`
	// ClientID and Seq make the command exactly-once (ClientID 0: no
	// deduplication). ClientID is chosen by the client (at random, so
	// that clients do not collide); its session opens with the first
	// command it applies, which must have Seq 1. Seq must grow with each
	// new command of the client; a retry reuses the Seq of the command it
	// retries. See the package documentation, Exactly-once.
	ClientID uint64 `msgpack:"s,omitempty"`
	Seq      uint64 `msgpack:"q,omitempty"`
	// Time is the proposer's clock in Unix nanoseconds. The store's clock
	// is the largest Time seen in the log; sessions expire against it.
	Time  int64  `msgpack:"tm,omitempty"`
	Key   []byte `msgpack:"k,omitempty"`
	End   []byte `msgpack:"e,omitempty"`
	Value []byte `msgpack:"v,omitempty"`
	// Prefix makes OpRange read every key starting with Key.
	Prefix bool `msgpack:"p,omitempty"`
	// Limit bounds OpRange's result (0: no limit).
	Limit uint64 `msgpack:"l,omitempty"`
	// Rev is OpRange's read revision (0: current) and OpCompact's target.
	Rev     uint64   `msgpack:"r,omitempty"`
	Compare *Compare `msgpack:"c,omitempty"`
	// Then is what OpCAS does when Compare holds: OpPut or OpDelete.
	Then Op `msgpack:"n,omitempty"`
	// SessionStart is the client's clock (Unix nanoseconds) when it chose
	// ClientID, the same in every command of the ClientID (0: unknown;
	// Time stands in). Only the command that opens a session reads it.
	SessionStart int64 `msgpack:"ss,omitempty"`
}

// EncodeCommand returns cmd's wire form (the Data of a log entry).
func EncodeCommand(cmd Command) ([]byte, error) {
	b, err := msgpack.Marshal(&cmd)
	if err != nil {
		return nil, fmt.Errorf("kvstore: encode command: %w", err)
	}
	return b, nil
}

// DecodeCommand decodes a command from untrusted bytes. Errors wrap
// ErrBadCommand.
func DecodeCommand(b []byte) (Command, error) {
	var cmd Command
	if err := unmarshal(b, &cmd); err != nil {
		return Command{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if cmd.Op > OpCloseSession {
		return Command{}, fmt.Errorf("%w: unknown op %d", ErrBadCommand, cmd.Op)
	}
	return cmd, nil
}

// unmarshal is the one place that decodes untrusted msgpack: internal/codec
// checks every length against the input before msgpack allocates.
func unmarshal(b []byte, v any) error { return codec.Unmarshal(b, v) }
