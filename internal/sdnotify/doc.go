// Package sdnotify tells systemd about a daemon's state with the
// sd_notify protocol: one datagram of newline-separated KEY=value
// assignments ("READY=1", "STATUS=leader, term 5", "STOPPING=1",
// "WATCHDOG=1") sent to the AF_UNIX datagram socket named by
// $NOTIFY_SOCKET. A name starting with '@' is in the abstract namespace
// (the '@' stands for the leading NUL byte); any other name must be an
// absolute path. Outside systemd (no $NOTIFY_SOCKET) a Notifier is nil and
// every method does nothing, so callers need no "am I under systemd?" test.
//
// Each message opens, sends on and closes its own socket, as systemd's
// sd_notify does: messages are rare, and a socket that systemd re-created
// (daemon-reexec) is found again. systemd accepts a message only from the
// unit's main process under NotifyAccess=main; this package sends from
// the calling process, never from a child.
//
// The watchdog (WatchdogSec= in the unit) sets $WATCHDOG_USEC, and
// $WATCHDOG_PID when it is meant for one process: WatchdogInterval reports
// it. systemd arms it once READY=1 has arrived; the daemon must then send
// WATCHDOG=1 more often than the interval (half is the usual choice), only
// after checking that it really works, or systemd kills and restarts it.
//
// No dependency on libsystemd or go-systemd: the protocol is small.
//
// # Usage
//
//	sd, err := sdnotify.New(os.LookupEnv) // nil, nil outside systemd
//	if err != nil { ... }                // $NOTIFY_SOCKET is unusable
//	sd.Status("joining via 10.0.0.1:7700")
//	// ... once serving:
//	sd.Ready()
//	// ... on shutdown:
//	sd.Stopping()
//
// # Testing
//
// The tests bind a unixgram socket in t.TempDir() (and one in the abstract
// namespace), point NOTIFY_SOCKET at it and read what arrives.
package sdnotify
