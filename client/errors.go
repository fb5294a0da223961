package client

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

// Sentinel errors. Every error a Client returns wraps at most a few of
// these; test them with errors.Is.
var (
	// ErrNotFound means the key does not exist (at the revision asked for).
	ErrNotFound = errors.New("client: key not found")
	// ErrTimeout means the operation's context expired (or Config.Timeout
	// passed) before any node answered it. A timed-out write also wraps
	// ErrOutcomeUnknown.
	ErrTimeout = errors.New("client: timed out")
	// ErrUnavailable means no node could serve the request: every known
	// address failed, or the cluster answered that it has no quorum.
	ErrUnavailable = errors.New("client: cluster unavailable")
	// ErrNoLeader means the nodes that answered know no leader (an election
	// is in progress or a quorum is gone).
	ErrNoLeader = errors.New("client: no leader")
	// ErrUnauthorized means a node or the entrance refused the request
	// (CodeRefused), or that an operation failed (timed out) after a node
	// or the entrance answered that it could not verify our datagrams:
	// Config.Secret differs from the cluster's (rudp.ErrAuthFailed is then
	// wrapped too, and so are ErrTimeout and ErrUnavailable or
	// ErrOutcomeUnknown as for any attempt that got no answer).
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrCompareFailed means a compare-and-swap's condition did not hold;
	// nothing was written.
	ErrCompareFailed = errors.New("client: compare failed")
	// ErrOutcomeUnknown means a write was sent but no answer came back
	// before the deadline, or the cluster refused a retry because the
	// write's session had expired meanwhile (the error then wraps a
	// *ServerError with proto.CodeSessionExpired): it may or may not have
	// been applied (it will be applied at most once). It is never reported
	// as a plain failure.
	ErrOutcomeUnknown = errors.New("client: write outcome unknown")
	// ErrCompacted means the revision asked for was compacted away.
	ErrCompacted = errors.New("client: revision compacted")
	// ErrInvalid means the cluster rejected the request as malformed or
	// over a limit (empty key, value too large, ...).
	ErrInvalid = errors.New("client: invalid request")
	// ErrInternal means a node reported an internal error.
	ErrInternal = errors.New("client: internal server error")
	// ErrClosed means the Client was closed.
	ErrClosed = errors.New("client: closed")
)

// ServerError is a definitive answer from a node other than OK. It wraps
// the sentinel its code maps to (errors.Is(err, ErrNotFound) and so on).
type ServerError struct {
	Code    proto.Code
	Message string
}

func (e *ServerError) Error() string {
	if e.Message == "" || e.Message == e.Code.String() {
		return "client: " + e.Code.String()
	}
	return fmt.Sprintf("client: %s: %s", e.Code, e.Message)
}

// Unwrap maps the code to its sentinel.
func (e *ServerError) Unwrap() error {
	switch e.Code {
	case proto.CodeNotFound:
		return ErrNotFound
	case proto.CodeCompareFailed:
		return ErrCompareFailed
	case proto.CodeInvalid:
		return ErrInvalid
	case proto.CodeUnavailable:
		return ErrUnavailable
	case proto.CodeRefused:
		return ErrUnauthorized
	case proto.CodeCompacted:
		return ErrCompacted
	case proto.CodeNotLeader:
		return ErrNoLeader
	case proto.CodeSessionExpired:
		return ErrUnavailable
	default:
		return ErrInternal
	}
}

// KeyNotFoundError is Get's error for a missing key; it wraps ErrNotFound.
type KeyNotFoundError struct {
	Key      string
	Revision int64 // the revision read at (0: current)
}

func (e *KeyNotFoundError) Error() string {
	if e.Revision > 0 {
		return fmt.Sprintf("client: key not found: %s (at revision %d)", e.Key, e.Revision)
	}
	return "client: key not found: " + e.Key
}

// Unwrap returns ErrNotFound.
func (e *KeyNotFoundError) Unwrap() error { return ErrNotFound }

// RangeCompactedError is the error of a range read in pages (Range, Get
// with Prefix, Scan) when the revision its pages were pinned at was
// compacted before the last page was read: the rest of that snapshot is
// gone. Retry the read; it will be pinned at a newer revision. It wraps
// ErrCompacted.
type RangeCompactedError struct {
	Revision int64 // the revision the pages were read at
	Read     int   // keys read before the compaction stopped it
	Err      error // the cluster's answer
}

func (e *RangeCompactedError) Error() string {
	return fmt.Sprintf("client: range read at revision %d: the revision was compacted after %d keys were read: retry the read (at a newer revision): %v",
		e.Revision, e.Read, e.Err)
}

// Unwrap returns the cluster's answer, which wraps ErrCompacted.
func (e *RangeCompactedError) Unwrap() error { return e.Err }

// authRefused returns err, a transport's error, also wrapping
// ErrUnauthorized if the peer refused our authentication
// (rudp.ErrAuthFailed: the cluster secret differs).
func authRefused(err error) error {
	if err == nil || !errors.Is(err, rudp.ErrAuthFailed) || errors.Is(err, ErrUnauthorized) {
		return err
	}
	return fmt.Errorf("%w (check the cluster secret): %w", ErrUnauthorized, err)
}

// keepRefusal returns last, or refused (an earlier attempt's error that
// wraps ErrUnauthorized) when last does not wrap it: that a node refused
// our secret explains a failure better than the last timeout does.
func keepRefusal(last, refused error) error {
	if refused != nil && !errors.Is(last, ErrUnauthorized) {
		return refused
	}
	return last
}
