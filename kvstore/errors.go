package kvstore

import "errors"

// Sentinel errors. Per-command errors travel in Result.Err (the command was
// consumed by the log and answered deterministically); I/O and invariant
// errors are returned by the method itself and are fatal to the caller.
var (
	// ErrKeyNotFound means the key does not exist (at the requested revision).
	ErrKeyNotFound = errors.New("kvstore: key not found")
	// ErrCompareFailed means a compare-and-swap's comparison did not hold;
	// Result.KV carries the key's current value (nil when it does not exist).
	ErrCompareFailed = errors.New("kvstore: compare failed")
	// ErrEmptyKey means a command or read named the empty key.
	ErrEmptyKey = errors.New("kvstore: empty key")
	// ErrKeyTooLarge means a key is longer than Config.MaxKeyBytes.
	ErrKeyTooLarge = errors.New("kvstore: key too large")
	// ErrValueTooLarge means a value is longer than Config.MaxValueBytes.
	ErrValueTooLarge = errors.New("kvstore: value too large")
	// ErrRequestTooLarge means an encoded command is longer than
	// Config.MaxRequestBytes.
	ErrRequestTooLarge = errors.New("kvstore: request too large")
	// ErrBadCommand means a log entry could not be decoded, or names an
	// unknown operation or compare target.
	ErrBadCommand = errors.New("kvstore: bad command")
	// ErrCompacted means the requested revision is below the compaction
	// revision: that history is gone.
	ErrCompacted = errors.New("kvstore: revision compacted")
	// ErrFutureRevision means the requested revision is above the current
	// revision.
	ErrFutureRevision = errors.New("kvstore: revision in the future")
	// ErrSessionExpired means the command's ClientID has no session
	// (expired, closed, or never opened) and the command cannot open one:
	// its Seq is not 1, or it was stamped more than SessionTTL/2 behind
	// the log clock. It was not applied now, but an earlier copy of it may
	// have been, before the session was dropped: the client must treat the
	// outcome as unknown (unless it never sent another copy) and continue
	// under a new ClientID.
	ErrSessionExpired = errors.New("kvstore: session expired or unknown")
	// ErrStaleSequence means the command's sequence number is below the
	// session's last one: a late duplicate whose answer nobody waits for.
	// It was not applied.
	ErrStaleSequence = errors.New("kvstore: stale sequence number")
	// ErrApplyGap means Apply was given an entry that does not follow the
	// applied index (a bug in the caller: entries must be applied in order).
	ErrApplyGap = errors.New("kvstore: entry does not follow the applied index")
	// ErrBadSnapshot means snapshot bytes are not a kvstore snapshot or are
	// corrupt. The store is unchanged.
	ErrBadSnapshot = errors.New("kvstore: bad snapshot")
	// ErrFormat means a state-machine file or snapshot has a layout
	// version this build does not read (written by an older or newer
	// raftkv). Nothing was changed.
	ErrFormat = errors.New("kvstore: unsupported store format")
	// ErrClosed means the store or log was closed.
	ErrClosed = errors.New("kvstore: closed")
)

// ErrCode is the persisted form of a per-command error (the session table
// stores answers, and an answer must decode to the same sentinel after a
// restart).
//
// ONLY APPEND: values are persisted in the session table and snapshots.
type ErrCode uint8

const (
	CodeOK              ErrCode = 0
	CodeKeyNotFound     ErrCode = 1
	CodeCompareFailed   ErrCode = 2
	CodeEmptyKey        ErrCode = 3
	CodeKeyTooLarge     ErrCode = 4
	CodeValueTooLarge   ErrCode = 5
	CodeRequestTooLarge ErrCode = 6
	CodeBadCommand      ErrCode = 7
	CodeCompacted       ErrCode = 8
	CodeFutureRevision  ErrCode = 9
	CodeSessionExpired  ErrCode = 10
	CodeStaleSequence   ErrCode = 11
)

var codeErrs = [...]error{
	CodeOK:              nil,
	CodeKeyNotFound:     ErrKeyNotFound,
	CodeCompareFailed:   ErrCompareFailed,
	CodeEmptyKey:        ErrEmptyKey,
	CodeKeyTooLarge:     ErrKeyTooLarge,
	CodeValueTooLarge:   ErrValueTooLarge,
	CodeRequestTooLarge: ErrRequestTooLarge,
	CodeBadCommand:      ErrBadCommand,
	CodeCompacted:       ErrCompacted,
	CodeFutureRevision:  ErrFutureRevision,
	CodeSessionExpired:  ErrSessionExpired,
	CodeStaleSequence:   ErrStaleSequence,
}

// Err returns the sentinel error for c (nil for CodeOK, ErrBadCommand for
// an unknown code).
func (c ErrCode) Err() error {
	if int(c) < len(codeErrs) {
		return codeErrs[c]
	}
	return ErrBadCommand
}

// CodeOf returns the code of a per-command error: the code of the first
// sentinel err wraps (ErrBadCommand when it wraps none).
func CodeOf(err error) ErrCode {
	if err == nil {
		return CodeOK
	}
	for c := 1; c < len(codeErrs); c++ {
		if errors.Is(err, codeErrs[c]) {
			return ErrCode(c)
		}
	}
	return CodeBadCommand
}
