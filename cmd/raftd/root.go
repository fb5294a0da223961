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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/raftkv/raftkv/internal/cliutil"
	"github.com/raftkv/raftkv/internal/discovery"
	"github.com/raftkv/raftkv/internal/sdnotify"
	"github.com/raftkv/raftkv/node"
)

// envPrefix is the prefix of the environment variables standing for flags.
const envPrefix = "RAFTD_"

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitRefused = 4
)

// options are the command-line flags.
type options struct {
	name            string
	listen          string
	advertise       string
	dataDir         string
	entrance        string
	secretFile      string
	http            string
	tickInterval    time.Duration
	snapshotEntries uint64
	logLevel        string
	logFormat       string
	discoveryPort   int
	discoveryAddrs  []string
}

// usageError marks a command-line mistake (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// readyFunc, when not nil, is told the node once it serves, and the HTTP
// address (nil without --http) (tests).
type readyFunc func(n *node.Node, http net.Addr)

// run executes the command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool), ready readyFunc) int {
	cmd := newRootCommand(ctx, lookupEnv, ready)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	switch {
	case errors.Is(err, node.ErrRefused):
		return exitRefused
	case isUsage(err):
		return exitUsage
	}
	return exitFailure
}

func isUsage(err error) bool {
	_, ok := errors.AsType[*usageError](err)
	return ok
}

func newRootCommand(ctx context.Context, lookupEnv func(string) (string, bool), ready readyFunc) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "raftd --name NAME --listen ADDR --data-dir DIR [--entrance ADDR] [--secret-file F]",
		Short: "Run one raftkv node",
		Long: `raftd is one node of a raftkv cluster: it keeps a copy of the replicated log and
key-value store under --data-dir and talks to the other nodes, the entrance and
clients over reliable UDP on --listen.

A node with an empty data dir joins through the entrance: the first one admitted
founds the cluster, later ones are added as learners and promoted to voters by
the leader once they caught up. The node ID it gets is kept in the data dir, so
a restart with the same data dir comes back as the same node.

Without --entrance the node finds the entrance on its LAN: it broadcasts to UDP
port --discovery-port (7799) of every interface's subnet broadcast address (or
of --discovery-addr) until the entrance answers, authenticated with the secret.

Every flag can be set by an environment variable RAFTD_<FLAG> (for example
RAFTD_DATA_DIR); a flag given on the command line wins.`,
		Example: `  raftd --name n1 --listen 127.0.0.1:7701 --data-dir ./data/n1 --entrance 127.0.0.1:7700
  raftd --name n2 --listen 10.0.0.2:7701 --data-dir ./data/n2   # finds the entrance by broadcast
  RAFTD_SECRET_FILE=/etc/raftkv/secret raftd --name n2 --listen 10.0.0.2:7701 --data-dir /var/lib/raftkv --entrance 10.0.0.1:7700`,
		Version: version(),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q (raftd takes only flags)", args[0])
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
	fl.StringVar(&o.name, "name", "", "node name, unique in the cluster (required)")
	fl.StringVar(&o.listen, "listen", "127.0.0.1:7701", "UDP address for nodes, the entrance and clients (rudp)")
	fl.StringVar(&o.advertise, "advertise", "", "address others reach this node at (default: --listen; required when --listen has no IP)")
	fl.StringVar(&o.dataDir, "data-dir", "", "directory of the log, the store and the node's identity (required)")
	fl.StringVar(&o.entrance, "entrance", "", `entrance address, ip:port ("": find it by LAN broadcast)`)
	fl.IntVar(&o.discoveryPort, "discovery-port", discovery.DefaultPort, "UDP port of the entrance's discovery responder (without --entrance)")
	fl.StringSliceVar(&o.discoveryAddrs, "discovery-addr", nil, "broadcast addresses to look for the entrance at, comma-separated (default: every interface's subnet broadcast)")
	fl.StringVar(&o.secretFile, "secret-file", "", "file holding the cluster secret (surrounding whitespace is ignored)")
	fl.StringVar(&o.http, "http", "", `HTTP address for /healthz, /v1/status and /metrics ("": off)`)
	fl.DurationVar(&o.tickInterval, "tick-interval", node.DefaultTickInterval, "duration of one Raft tick (election timeout: 10 ticks)")
	fl.Uint64Var(&o.snapshotEntries, "snapshot-entries", node.DefaultSnapshotEntries, "applied entries between snapshots (log compaction)")
	fl.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&o.logFormat, "log-format", "text", "text or json (to stderr)")
	return cmd
}

// check validates the options that need no I/O.
func (o *options) check() (entrance, advertise netip.AddrPort, bcast []netip.Addr, err error) {
	switch {
	case o.name == "":
		return entrance, advertise, nil, usagef("--name is required")
	case strings.ContainsAny(o.name, " \t\n"):
		return entrance, advertise, nil, usagef("--name %q: no spaces", o.name)
	case o.dataDir == "":
		return entrance, advertise, nil, usagef("--data-dir is required")
	case o.listen == "":
		return entrance, advertise, nil, usagef("--listen is required")
	case !cliutil.ValidListenAddr(o.listen):
		return entrance, advertise, nil, usagef("--listen %q: want ip:port, for example 127.0.0.1:7701", o.listen)
	case o.http != "" && !cliutil.ValidListenAddr(o.http):
		return entrance, advertise, nil, usagef("--http %q: want ip:port, for example 127.0.0.1:7702", o.http)
	case o.discoveryPort < 1 || o.discoveryPort > 65535:
		return entrance, advertise, nil, usagef("--discovery-port %d: want 1-65535", o.discoveryPort)
	case o.tickInterval <= 0:
		return entrance, advertise, nil, usagef("--tick-interval %v: want a positive duration", o.tickInterval)
	case o.snapshotEntries < 1:
		return entrance, advertise, nil, usagef("--snapshot-entries %d: want at least 1", o.snapshotEntries)
	}
	if o.entrance != "" {
		entrance, err = netip.ParseAddrPort(o.entrance)
		if err != nil {
			return entrance, advertise, nil, usagef("--entrance %q: want ip:port", o.entrance)
		}
	}
	for _, s := range o.discoveryAddrs {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() || a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return entrance, advertise, nil, usagef("--discovery-addr %q: want an IPv4 subnet broadcast address such as 192.168.1.255 (not 255.255.255.255)", s)
		}
		bcast = append(bcast, a)
	}
	if o.advertise != "" {
		if advertise, err = netip.ParseAddrPort(o.advertise); err != nil || advertise.Addr().IsUnspecified() {
			return entrance, advertise, nil, usagef("--advertise %q: want a reachable ip:port", o.advertise)
		}
	}
	return entrance, advertise, bcast, nil
}

// serve runs the node until ctx is done or the node stops by itself.
// Under systemd (Type=notify: $NOTIFY_SOCKET, read with lookupEnv) it
// reports STATUS= lines while joining, READY=1 once the node serves,
// then status changes and watchdog pings (see supervise), and STOPPING=1
// when it shuts down.
func serve(ctx context.Context, o options, stderr io.Writer, lookupEnv func(string) (string, bool), ready readyFunc) error {
	entrance, advertise, bcast, err := o.check()
	if err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	secret, err := readSecret(o.secretFile)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(o.dataDir); err == nil && !fi.IsDir() {
		return usagef("--data-dir %s is a file, not a directory", o.dataDir)
	}
	sd, err := sdnotify.New(lookupEnv)
	if err != nil {
		log.Warn("not notifying systemd", "err", err)
	}
	watchdog, err := sdnotify.WatchdogInterval(lookupEnv, os.Getpid())
	if err != nil {
		log.Warn("systemd watchdog off", "err", err)
	}
	pc, err := net.ListenPacket("udp", o.listen)
	if err != nil {
		return cliutil.ListenError("--listen", o.listen, "another raftd or entrance", err)
	}
	if !advertise.IsValid() {
		advertise, err = netip.ParseAddrPort(pc.LocalAddr().String())
		if err == nil && advertise.Addr().IsUnspecified() {
			err = errors.New("unspecified IP")
		}
		if err != nil {
			pc.Close()
			return usagef("--listen %s has no IP others can reach: give --advertise", o.listen)
		}
	}
	var ln net.Listener
	if o.http != "" {
		if ln, err = net.Listen("tcp", o.http); err != nil {
			pc.Close()
			return cliutil.ListenError("--http", o.http, "another raftd or entrance", err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := node.Config{
		Name: o.name, DataDir: o.dataDir, PacketConn: pc, AdvertiseAddr: advertise, Secret: secret,
		Entrance: entrance, TickInterval: o.tickInterval, SnapshotEntries: o.snapshotEntries, Logger: log,
		Registry: reg, Version: version(),
	}
	var n *node.Node
	if !entrance.IsValid() {
		f := &discovery.Finder{Port: o.discoveryPort, Broadcast: bcast, Secret: secret, Name: o.name, Logger: log.With("name", o.name)}
		cfg.FindEntrance = func(ctx context.Context) (netip.AddrPort, error) {
			a, err := f.Find(ctx)
			select {
			case <-n.Ready(): // a restarted node looks in the background
			default:
				if err == nil {
					sd.Status("joining via " + a.String())
				}
			}
			return a, err
		}
	}
	n, err = node.New(cfg)
	if err != nil {
		pc.Close()
		if ln != nil {
			ln.Close()
		}
		return dataDirError(o.dataDir, err)
	}
	entranceWord := entrance.String()
	if !entrance.IsValid() {
		entranceWord = fmt.Sprintf("discovery on port %d", o.discoveryPort)
	}
	log.Info("raftd starting", "version", version(), "name", o.name, "listen", pc.LocalAddr().String(),
		"advertise", advertise.String(), "data_dir", o.dataDir, "entrance", entranceWord,
		"authenticated", secret != nil, "tick_interval", o.tickInterval, "http", o.http)
	if entrance.IsValid() {
		sd.Status("joining via " + entrance.String())
	} else {
		sd.Status(fmt.Sprintf("looking for the entrance (broadcast to port %d)", o.discoveryPort))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// The node also stops by itself (removed, or asked to stop): then
		// cancel ends the watchers below.
		defer cancel()
		return n.Run(gctx)
	})
	var httpAddr net.Addr
	if ln != nil {
		httpAddr = ln.Addr()
		srv := newHTTPServer(n)
		g.Go(func() error { return serveHTTP(gctx, srv, ln) })
	}
	g.Go(func() error {
		select {
		case <-n.Ready():
			if ready != nil {
				ready(n, httpAddr)
			}
			if sd == nil {
				return nil
			}
			if err := sd.Ready("serving at " + advertise.String()); err != nil {
				log.Warn("cannot tell systemd the node is ready", "err", err)
			}
			interval, timeout := superviseTiming(watchdog)
			supervise(gctx, sd, n.Status, interval, timeout, watchdog > 0, log)
		case <-gctx.Done():
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sd.Stopping("stopping")
		return n.Close()
	})
	if err := g.Wait(); err != nil {
		return dataDirError(o.dataDir, err)
	}
	log.Info("raftd stopped")
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

// dataDirError explains bbolt's lock timeout: another process (a raftd
// still running with dir) holds a database of dir.
// A data dir this user may not write is a usage error (exit 2):
// restarting does not fix it.
func dataDirError(dir string, err error) error {
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return fmt.Errorf("--data-dir %s is in use by another process (is a raftd still running with it?): %w; stop that one, or give this node its own --data-dir", dir, err)
	case errors.Is(err, fs.ErrPermission):
		return usagef("--data-dir %s: permission denied for user %d (%v); make it writable by that user, or choose another --data-dir", dir, os.Getuid(), innermostPathError(err))
	}
	return err
}

// innermostPathError is the *fs.PathError inside err ("open X: permission
// denied"), without the wrappers that repeat its path; err if none.
func innermostPathError(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe
	}
	return err
}

func readSecret(path string) ([]byte, error) {
	secret, err := cliutil.ReadSecret(path)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return secret, nil
}
