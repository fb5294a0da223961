package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrBadSocket means $NOTIFY_SOCKET names no socket this package can use
// (neither an absolute path nor an '@' abstract name).
var ErrBadSocket = errors.New("sdnotify: unusable NOTIFY_SOCKET")

// Notifier sends sd_notify messages to systemd. A nil *Notifier (no
// $NOTIFY_SOCKET) sends nothing and returns nil from every method. It is
// safe for concurrent use.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns a Notifier for the socket $NOTIFY_SOCKET names, read with
// lookupEnv (os.LookupEnv in a daemon); nil and no error when the
// variable is unset or empty (not started by systemd, or Type= is not
// notify).
func New(lookupEnv func(string) (string, bool)) (*Notifier, error) {
	name, ok := lookupEnv("NOTIFY_SOCKET")
	if !ok || name == "" {
		return nil, nil
	}
	if name[0] != '/' && name[0] != '@' {
		return nil, fmt.Errorf("%w: %q: want an absolute path or an @abstract name", ErrBadSocket, name)
	}
	// On Linux the net package maps a leading '@' to the abstract
	// namespace's NUL byte.
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}, nil
}

// Socket returns the socket's name ("" for a nil Notifier).
func (n *Notifier) Socket() string {
	if n == nil {
		return ""
	}
	return n.addr.Name
}

// Send sends the assignments ("READY=1", "STATUS=...") in one datagram,
// one per line. It is the primitive under the other methods.
func (n *Notifier) Send(assignments ...string) error {
	if n == nil || len(assignments) == 0 {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.addr.Name, err)
	}
	return nil
}

// Ready tells systemd that start-up is complete (READY=1), with a STATUS
// line unless status is empty. systemd then considers the unit started
// and arms the watchdog.
func (n *Notifier) Ready(status string) error {
	if status == "" {
		return n.Send("READY=1")
	}
	return n.Send("READY=1", statusLine(status))
}

// Stopping tells systemd that the daemon is shutting down (STOPPING=1),
// with a STATUS line unless status is empty.
func (n *Notifier) Stopping(status string) error {
	if status == "" {
		return n.Send("STOPPING=1")
	}
	return n.Send("STOPPING=1", statusLine(status))
}

// Status sets the free-form status systemctl status shows (STATUS=).
// Line breaks become spaces.
func (n *Notifier) Status(status string) error {
	return n.Send(statusLine(status))
}

// Watchdog pings the watchdog (WATCHDOG=1). Send it only after checking
// that the daemon works: a ping from a goroutine that merely runs hides a
// hung daemon from systemd.
func (n *Notifier) Watchdog() error {
	return n.Send("WATCHDOG=1")
}

func statusLine(s string) string {
	return "STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// WatchdogInterval returns the watchdog timeout systemd set for process
// pid ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or names pid), or 0
// when there is none. Ping at half of it. A malformed value is an error.
func WatchdogInterval(lookupEnv func(string) (string, bool), pid int) (time.Duration, error) {
	s, ok := lookupEnv("WATCHDOG_USEC")
	if !ok || s == "" {
		return 0, nil
	}
	usec, err := strconv.ParseUint(s, 10, 63)
	if err != nil || usec == 0 || usec > uint64(time.Duration(1<<63-1)/time.Microsecond) {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC=%q: want a positive number of microseconds", s)
	}
	if p, ok := lookupEnv("WATCHDOG_PID"); ok && p != "" {
		wpid, err := strconv.Atoi(p)
		if err != nil || wpid <= 0 {
			return 0, fmt.Errorf("sdnotify: WATCHDOG_PID=%q: want a process ID", p)
		}
		if wpid != pid {
			return 0, nil // meant for another process
		}
	}
	return time.Duration(usec) * time.Microsecond, nil
}
