package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	bolt "go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/entrance"
	"github.com/raftkv/raftkv/internal/cliutil"
	"github.com/raftkv/raftkv/internal/discovery"
	"github.com/raftkv/raftkv/internal/sdnotify"
)

// envPrefix is the prefix of the environment variables standing for flags.
const envPrefix = "ENTRANCE_"

// options are the command-line flags.
type options struct {
	listen     string
	http       string
	dataDir    string
	secretFile string
	voters     int
	// Liveness and autopilot.
	pingInterval, suspectAfter, downAfter, downGrace time.Duration
	// discoveryPort is where raftd discovery broadcasts are answered (0: off).
	discoveryPort int
	logLevel      string
	logFormat     string
}

// usageError marks a command-line mistake (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// ready, when not nil, is told the bound addresses once serving (tests).
type readyFunc func(udp, http net.Addr)

// run executes the command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool), ready readyFunc) int {
	cmd := newRootCommand(ctx, lookupEnv, ready)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	if _, ok := errors.AsType[*usageError](err); ok {
		return 2
	}
	return 1
}

func newRootCommand(ctx context.Context, lookupEnv func(string) (string, bool), ready readyFunc) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "entrance --listen ADDR --http ADDR --data-dir DIR [--secret-file F] [--voters N] [--down-grace D]",
		Short: "Run the raftkv entrance: admission, registry, leader tracking, routing",
		Long: `entrance is the front door of a raftkv cluster. Nodes (raftd) join through it:
the first one founds the cluster, later ones are added as learners through the
leader and promoted to voters once caught up, up to --voters. Leaders report to
it, so it answers clients' "who leads" and "list peers" questions. It is not on
the data path: the cluster keeps serving while it is down.

It pings every node each --ping-interval: a node not heard from for
--suspect-after is suspect, for --down-after down. A member down for
--down-grace more is removed from the membership through the leader, only if
the voters left still hold a live quorum, and a caught-up learner is promoted
in its place. --http serves a status page at /, the same data as JSON at
/v1/cluster, Prometheus metrics at /metrics and /healthz.

Every flag can be set by an environment variable ENTRANCE_<FLAG> (for example
ENTRANCE_DATA_DIR); a flag given on the command line wins.`,
		Example: `  entrance --listen 127.0.0.1:7700 --http 127.0.0.1:7780 --data-dir /var/lib/raftkv/entrance
  ENTRANCE_SECRET_FILE=/etc/raftkv/secret entrance --data-dir ./entrance-data --voters 3`,
		Version: version(),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q (entrance takes only flags)", args[0])
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags(), lookupEnv)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(ctx, o, cmd.ErrOrStderr(), lookupEnv, ready)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	fl := cmd.Flags()
	fl.StringVar(&o.listen, "listen", "127.0.0.1:7700", "UDP address for nodes and clients (rudp)")
	fl.StringVar(&o.http, "http", "127.0.0.1:7780", `HTTP address for the status page /, /v1/cluster, /metrics and /healthz ("" turns it off)`)
	fl.StringVar(&o.dataDir, "data-dir", "", "directory of the registry (required)")
	fl.StringVar(&o.secretFile, "secret-file", "", "file holding the cluster secret (surrounding whitespace is ignored)")
	fl.IntVar(&o.voters, "voters", 5, "most voters; further nodes stay learners")
	fl.DurationVar(&o.pingInterval, "ping-interval", 500*time.Millisecond, "how often every node is pinged (0 turns pings off)")
	fl.DurationVar(&o.suspectAfter, "suspect-after", 2*time.Second, "a node not heard from this long is suspect")
	fl.DurationVar(&o.downAfter, "down-after", 6*time.Second, "a node not heard from this long is down")
	fl.DurationVar(&o.downGrace, "down-grace", 30*time.Second,
		"a node down this long (after --down-after) is removed from the membership if a live quorum remains (0 turns removal off)")
	fl.IntVar(&o.discoveryPort, "discovery-port", discovery.DefaultPort,
		"UDP port on which raftd discovery broadcasts are answered, bound on 0.0.0.0 with SO_REUSEADDR (0 turns it off)")
	fl.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&o.logFormat, "log-format", "text", "text or json (to stderr)")
	return cmd
}

// serve runs the entrance until ctx is done. Under systemd (Type=notify:
// $NOTIFY_SOCKET, read with lookupEnv) it sends READY=1 once the registry
// is open and its sockets listen, and STOPPING=1 when it shuts down.
func serve(ctx context.Context, o options, stderr io.Writer, lookupEnv func(string) (string, bool), ready readyFunc) error {
	if o.dataDir == "" {
		return usagef("--data-dir is required")
	}
	if o.discoveryPort < 0 || o.discoveryPort > 65535 {
		return usagef("--discovery-port %d: want 0 (off) to 65535", o.discoveryPort)
	}
	if o.voters < 1 {
		return usagef("--voters %d: want at least 1", o.voters)
	}
	if o.listen == "" {
		return usagef("--listen is required")
	}
	if !cliutil.ValidListenAddr(o.listen) {
		return usagef("--listen %q: want ip:port, for example 127.0.0.1:7700", o.listen)
	}
	if o.http != "" && !cliutil.ValidListenAddr(o.http) {
		return usagef("--http %q: want ip:port, for example 127.0.0.1:7780 (or \"\" for none)", o.http)
	}
	if fi, err := os.Stat(o.dataDir); err == nil && !fi.IsDir() {
		return usagef("--data-dir %s is a file, not a directory", o.dataDir)
	}
	switch {
	case o.pingInterval < 0:
		return usagef("--ping-interval %v: want 0 (off) or more", o.pingInterval)
	case o.suspectAfter <= 0 || o.downAfter < o.suspectAfter:
		return usagef("--suspect-after %v, --down-after %v: want 0 < suspect-after <= down-after", o.suspectAfter, o.downAfter)
	case o.downGrace < 0:
		return usagef("--down-grace %v: want 0 (off) or more", o.downGrace)
	}
	pingInterval := o.pingInterval
	if pingInterval == 0 {
		pingInterval = -1 // off
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	secret, err := cliutil.ReadSecret(o.secretFile)
	if err != nil {
		return usagef("%v", err) // exit 2, as raftd: restarting does not fix it
	}
	sd, err := sdnotify.New(lookupEnv)
	if err != nil {
		log.Warn("not notifying systemd", "err", err)
	}
	pc, err := net.ListenPacket("udp", o.listen)
	if err != nil {
		return cliutil.ListenError("--listen", o.listen, "another entrance or raftd", err)
	}
	var ln net.Listener
	if o.http != "" {
		if ln, err = net.Listen("tcp", o.http); err != nil {
			pc.Close()
			return cliutil.ListenError("--http", o.http, "another entrance or raftd", err)
		}
	}
	cfg := entrance.Config{DataDir: o.dataDir, Voters: o.voters, PacketConn: pc, Secret: secret, Logger: log,
		PingInterval: pingInterval, SuspectAfter: o.suspectAfter, DownAfter: o.downAfter, DownGrace: o.downGrace,
		Version: version()}
	if ln != nil {
		cfg.HTTPListener = ln
	}
	e, err := entrance.New(cfg)
	if err != nil {
		pc.Close()
		if ln != nil {
			ln.Close()
		}
		return dataDirError(o.dataDir, err)
	}
	log.Info("entrance starting", "version", version(), "listen", pc.LocalAddr().String(), "http", o.http,
		"data_dir", o.dataDir, "voters", o.voters, "authenticated", secret != nil,
		"ping_interval", o.pingInterval, "suspect_after", o.suspectAfter, "down_after", o.downAfter, "down_grace", o.downGrace)
	if ready != nil {
		var ha net.Addr
		if ln != nil {
			ha = ln.Addr()
		}
		ready(pc.LocalAddr(), ha)
	}
	resp := startDiscovery(ctx, &o, pc.LocalAddr(), secret, log)
	// The registry is open and the sockets are bound (what arrives now
	// waits in their queues until Run reads it): ready.
	status := "serving at " + pc.LocalAddr().String()
	if ln != nil {
		status += ", http " + ln.Addr().String()
	}
	if err := sd.Ready(status); err != nil {
		log.Warn("cannot tell systemd the entrance is ready", "err", err)
	}
	stopping := func() { sd.Stopping("stopping") }
	notifyOnCancel := context.AfterFunc(ctx, stopping)
	runErr := e.Run(ctx)
	if notifyOnCancel() { // Run ended by itself (an error)
		stopping()
	}
	if resp != nil {
		resp.Close()
	}
	closeErr := e.Close()
	if runErr != nil {
		return runErr
	}
	if closeErr != nil {
		return closeErr
	}
	log.Info("entrance stopped")
	return nil
}

// version is the module version the binary was built from, with the VCS
// revision when known.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// startDiscovery answers raftd discovery broadcasts with the entrance's
// rudp address, so that a raftd started without --entrance finds it. It is
// best effort: a port that cannot be bound is logged and the entrance runs
// without it (nodes can still be given --entrance).
func startDiscovery(ctx context.Context, o *options, listen net.Addr, secret []byte, log *slog.Logger) *discovery.Responder {
	if o.discoveryPort == 0 {
		return nil
	}
	addr, err := netip.ParseAddrPort(listen.String())
	if err != nil {
		log.Warn("discovery off: entrance address not ip:port", "addr", listen.String(), "err", err)
		return nil
	}
	dpc, err := discovery.Listen(ctx, o.discoveryPort)
	if err != nil {
		log.Warn("discovery off: cannot bind the discovery port; give nodes --entrance", "port", o.discoveryPort, "err", err)
		return nil
	}
	resp, err := discovery.NewResponder(discovery.ResponderConfig{Addr: addr, PacketConn: dpc, Secret: secret, Logger: log})
	if err != nil {
		dpc.Close()
		log.Warn("discovery off", "err", err)
		return nil
	}
	go resp.Run(ctx)
	log.Info("answering discovery broadcasts", "port", o.discoveryPort, "addr", addr.String())
	return resp
}

// dataDirError explains a registry that cannot be opened: bbolt's lock
// timeout means another process (an entrance still running with dir)
// holds it; a data dir this user may not write is a usage error (exit 2):
// restarting does not fix it.
func dataDirError(dir string, err error) error {
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return fmt.Errorf("--data-dir %s is in use by another process (is an entrance still running with it?): %w; stop that one, or give this one its own --data-dir", dir, err)
	case errors.Is(err, fs.ErrPermission):
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe
		}
		return usagef("--data-dir %s: permission denied for user %d (%v); make it writable by that user, or choose another --data-dir", dir, os.Getuid(), err)
	}
	return err
}

// applyEnv sets every flag not given on the command line from its
// envPrefix variable; a bad value is a usage error.
func applyEnv(fl *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	if err := cliutil.ApplyEnv(fl, envPrefix, lookupEnv); err != nil {
		return usagef("%v", err)
	}
	return nil
}

func newLogger(o options, w io.Writer) (*slog.Logger, error) {
	log, err := cliutil.NewLogger(o.logLevel, o.logFormat, w)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return log, nil
}
