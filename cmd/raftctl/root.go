package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/rudp"
)

// Environment variables standing for the global flags (a flag wins).
const (
	envEntrance   = "RAFTCTL_ENTRANCE"
	envEndpoints  = "RAFTCTL_ENDPOINTS"
	envSecretFile = "RAFTCTL_SECRET_FILE"

	defaultEntrance = "127.0.0.1:7700"
)

// kv is what the commands need from a cluster; *client.Client has it and
// tests plug in a fake.
type kv interface {
	Put(ctx context.Context, key string, value []byte) (*client.WriteResult, error)
	Get(ctx context.Context, key string, opts client.GetOptions) (*client.GetResult, error)
	Delete(ctx context.Context, key string) (*client.WriteResult, error)
	DeletePrefix(ctx context.Context, prefix string) (*client.WriteResult, error)
	ListPeers(ctx context.Context) ([]client.Peer, error)
	Status(ctx context.Context, addr string) (*client.NodeStatus, error)
	TransferLeader(ctx context.Context, leaderAddr string, id uint64) error
	StopNode(ctx context.Context, addr string, id uint64, keepMembership bool) error
	Close() error
}

// globalOptions are the persistent flags.
type globalOptions struct {
	entrance   string
	endpoints  []string
	secretFile string
	output     string
	timeout    time.Duration
	debug      bool
}

// factory holds the global options and builds the client for a command.
type factory struct {
	opts      globalOptions
	lookupEnv func(string) (string, bool)
	// newKV connects; tests replace it.
	newKV func(ctx context.Context, cfg client.Config) (kv, error)
	// cfg is the client configuration the last connect used (tests read it).
	cfg    client.Config
	stderr io.Writer
	// stdin is where `put KEY` reads its value (nil: none);
	// stdinIsTerminal says whether it is a terminal.
	stdin           io.Reader
	stdinIsTerminal func() bool
	// secretFrom names where opts.secretFile came from (the flag or its
	// variable), for errors.
	secretFrom string
	// parsed is set once flags and environment were accepted: any error
	// before it is a usage error.
	parsed bool
}

func newFactory(lookupEnv func(string) (string, bool)) *factory {
	return &factory{
		lookupEnv:       lookupEnv,
		stdinIsTerminal: func() bool { return false },
		newKV: func(ctx context.Context, cfg client.Config) (kv, error) {
			return client.New(ctx, cfg)
		},
	}
}

// usageError marks a command-line mistake (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// applyEnv fills the address and secret options from the environment where
// no flag set them. Naming either address flag ignores both address
// variables, so `--endpoints` works in a shell that exports
// RAFTCTL_ENTRANCE.
func (f *factory) applyEnv(cmd *cobra.Command) error {
	fl := cmd.Flags()
	if fl.Changed("entrance") && fl.Changed("endpoints") {
		return usagef("--entrance and --endpoints are mutually exclusive")
	}
	if !fl.Changed("entrance") && !fl.Changed("endpoints") {
		if v, ok := f.lookupEnv(envEntrance); ok && v != "" {
			f.opts.entrance = v
		}
		if v, ok := f.lookupEnv(envEndpoints); ok && v != "" {
			f.opts.endpoints = splitList(v)
		}
	}
	f.secretFrom = "--secret-file"
	if !fl.Changed("secret-file") {
		if v, ok := f.lookupEnv(envSecretFile); ok && v != "" {
			f.opts.secretFile = v
			f.secretFrom = envSecretFile
		}
	}
	if f.opts.entrance == "" && len(f.opts.endpoints) == 0 {
		f.opts.entrance = defaultEntrance
	}
	if err := checkAddrs(fl, f.opts.entrance, f.opts.endpoints); err != nil {
		return err
	}
	switch f.opts.output {
	case "text", "json":
	default:
		return usagef("unknown output format %q (want text or json)", f.opts.output)
	}
	if f.opts.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	return nil
}

// checkAddrs refuses an address that is not host:port before anything is
// sent: a missing port would otherwise be retried until --timeout.
func checkAddrs(fl *pflag.FlagSet, entrance string, endpoints []string) error {
	check := func(source, addr string) error {
		host, port, err := net.SplitHostPort(addr)
		if err == nil {
			n, perr := strconv.Atoi(port)
			if host == "" || perr != nil || n < 1 || n > 65535 {
				err = errors.New("bad host or port")
			}
		}
		if err != nil {
			return usagef("%s %q: want host:port, for example 127.0.0.1:7700", source, addr)
		}
		return nil
	}
	if entrance != "" {
		source := "--entrance"
		if !fl.Changed("entrance") {
			source = envEntrance
		}
		if err := check(source, entrance); err != nil {
			return err
		}
	}
	for _, a := range endpoints {
		source := "--endpoints"
		if !fl.Changed("endpoints") {
			source = envEndpoints
		}
		if err := check(source, a); err != nil {
			return err
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// connect builds the client from the options.
func (f *factory) connect(ctx context.Context) (kv, error) {
	cfg := client.Config{Entrance: f.opts.entrance, Endpoints: f.opts.endpoints, Timeout: f.opts.timeout}
	if f.opts.secretFile != "" {
		b, err := os.ReadFile(f.opts.secretFile)
		if err != nil {
			return nil, usagef("%s: cannot read the cluster secret: %v (give the file the cluster's nodes use)",
				f.secretFrom, unwrapPathError(err))
		}
		secret := []byte(strings.TrimSpace(string(b)))
		if len(secret) == 0 {
			return nil, usagef("%s: the secret file %s is empty", f.secretFrom, f.opts.secretFile)
		}
		cfg.Secret = secret
	}
	if f.opts.debug {
		cfg.Logger = slog.New(slog.NewTextHandler(f.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	f.cfg = cfg
	return f.newKV(ctx, cfg)
}

// unwrapPathError keeps an *os.PathError's operation, path and cause, in
// one order: "open /x: no such file or directory".
func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}

// withKV connects, runs fn and closes the client.
func (f *factory) withKV(ctx context.Context, fn func(kv) error) error {
	c, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func newRootCommand(f *factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "raftctl",
		Short: "Read and write keys of a raftkv cluster, and inspect it",
		Long: `raftctl talks to a raftkv cluster: through the entrance (--entrance, which
knows the leader), or directly to nodes (--endpoints), for example while the
entrance is down. With neither, it uses the entrance at ` + defaultEntrance + `.

Environment: ` + envEntrance + `, ` + envEndpoints + ` (comma-separated) and
` + envSecretFile + ` stand for the flags; a flag wins over its variable.`,
		Example: `  raftctl put greeting hello
  raftctl get greeting
  raftctl --endpoints 127.0.0.1:7701,127.0.0.1:7702 get greeting --serializable
  raftctl -o json list-peers`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.applyEnv(cmd); err != nil {
				return err
			}
			f.parsed = true
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&f.opts.entrance, "entrance", "", "entrance address host:port (env "+envEntrance+"; default "+defaultEntrance+")")
	pf.StringSliceVar(&f.opts.endpoints, "endpoints", nil, "node addresses host:port,... to use directly (env "+envEndpoints+")")
	pf.StringVar(&f.opts.secretFile, "secret-file", "", "file holding the cluster secret (env "+envSecretFile+")")
	pf.StringVarP(&f.opts.output, "output", "o", "text", "output format: text or json")
	pf.DurationVar(&f.opts.timeout, "timeout", client.DefaultTimeout, "how long one command may take, retries included")
	pf.BoolVar(&f.opts.debug, "debug", false, "log redirects and retries to stderr")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	root.AddCommand(
		newPutCommand(f),
		newGetCommand(f),
		newDelCommand(f),
		newListPeersCommand(f),
		newStatusCommand(f),
		newTransferLeaderCommand(f),
		newStopNodeCommand(f),
		newBenchCommand(f),
		newVersionCommand(f),
		newExitCodesTopic(),
	)
	return root
}

// addCompletionCommand adds cobra's completion command now (it takes the
// root's output when created: call it after SetOut) and makes an unknown
// shell a usage error: `completion ksh` printed the help and exited 0.
func addCompletionCommand(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	comp, _, err := root.Find([]string{"completion"})
	if err != nil || comp == root {
		return
	}
	comp.Args = cobra.ArbitraryArgs
	comp.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("completion: unknown shell %q (want bash, zsh, fish or powershell)", args[0])
		}
		return cmd.Help()
	}
}

// exactArgs is cobra.ExactArgs with a usage error that names what the
// command takes (from its Use line).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return argCountError(cmd, args)
		}
		return nil
	}
}

// rangeArgs accepts lo to hi arguments.
func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return argCountError(cmd, args)
		}
		return nil
	}
}

// argCountError says what the command takes: "put takes KEY [VALUE], got
// 3 arguments".
func argCountError(cmd *cobra.Command, args []string) error {
	_, want, _ := strings.Cut(cmd.Use, " ")
	if want == "" {
		return usagef("%s takes no arguments, got %d (%q)", cmd.Name(), len(args), strings.Join(args, " "))
	}
	return usagef("%s takes %s, got %d argument%s", cmd.Name(), want, len(args), plural(len(args)))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// unknownLeadingFlag returns the first flag before the command name that
// raftctl does not know ("" if none). Cobra would take the word after it
// as the flag's value and then complain about an unknown command, so that
// `raftctl --serializable get k` reported 'unknown command "k"'.
func unknownLeadingFlag(root *cobra.Command, args []string) string {
	root.InitDefaultHelpFlag()
	root.InitDefaultVersionFlag()
	lookup := func(name string, short bool) *pflag.Flag {
		for _, fs := range []*pflag.FlagSet{root.PersistentFlags(), root.Flags()} {
			if short {
				if fl := fs.ShorthandLookup(name); fl != nil {
					return fl
				}
			} else if fl := fs.Lookup(name); fl != nil {
				return fl
			}
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			return ""
		}
		var (
			fl       *pflag.Flag
			hasValue bool
		)
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, hasValue = strings.Cut(name, "=")
			fl = lookup(name, false)
		} else {
			fl = lookup(a[1:2], true)
			hasValue = len(a) > 2
		}
		if fl == nil {
			return a
		}
		if !hasValue && fl.NoOptDefVal == "" {
			i++ // the flag's value
		}
	}
	return ""
}

// run executes raftctl with args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, f *factory) int {
	f.stderr = stderr
	root := newRootCommand(f)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	addCompletionCommand(root)
	var (
		cmd = root
		err error
	)
	if a := unknownLeadingFlag(root, args); a != "" {
		err = usagef("unknown flag: %s (a command's own flags go after the command name)", a)
	} else {
		cmd, err = root.ExecuteContextC(ctx)
	}
	if err == nil {
		return exitOK
	}
	code := exitCode(err, f.parsed)
	msg := shortenArgs(strings.ReplaceAll(err.Error(), "client: ", ""), args)
	if code == exitUnavailable && strings.Contains(msg, "ask entrance "+f.opts.entrance+" who leads") &&
		strings.Contains(msg, "peer unreachable") {
		// The entrance did not answer: the nodes may still serve.
		msg += fmt.Sprintf("; is the entrance at %s running? raftctl --endpoints NODE,... talks to the nodes without it", f.opts.entrance)
	}
	if code == exitUnauthorized && errors.Is(err, rudp.ErrAuthFailed) {
		if f.opts.secretFile == "" {
			msg += "; the cluster has a secret: give its file with --secret-file"
		} else {
			msg += fmt.Sprintf("; check that %s (%s) holds the cluster's secret (leave it out if the cluster has none)", f.secretFrom, f.opts.secretFile)
		}
	}
	if ctx.Err() != nil && code != exitUsage {
		// Ctrl-C (or SIGTERM): say so, whatever the command made of the
		// cancelled context; a write's "outcome unknown" stays in msg.
		code = exitInterrupted
		msg = "interrupted: " + msg
	}
	fmt.Fprintln(stderr, "Error:", msg)
	if code == exitUsage {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// maxQuotedArg is how much of a long argument (a key over the size limit)
// an error message repeats.
const maxQuotedArg = 64

// shortenArgs replaces each long argument quoted in msg ("put "kkk...":
// key too large") by its first maxQuotedArg bytes and its length, so that
// the error stays one readable line.
func shortenArgs(msg string, args []string) string {
	for _, a := range args {
		if len(a) <= maxQuotedArg {
			continue
		}
		short := fmt.Sprintf("%q... (%d bytes)", a[:maxQuotedArg], len(a))
		msg = strings.ReplaceAll(msg, strconv.Quote(a), short)
		msg = strings.ReplaceAll(msg, a, short)
	}
	return msg
}

// exitCode maps an error to the documented exit status.
func exitCode(err error, parsed bool) int {
	var ue *usageError
	switch {
	case errors.As(err, &ue) || !parsed:
		return exitUsage
	case errors.Is(err, client.ErrUnauthorized):
		return exitUnauthorized
	case errors.Is(err, client.ErrCompareFailed):
		return exitCompareFailed
	case errors.Is(err, client.ErrNotFound):
		return exitError
	case errors.Is(err, client.ErrOutcomeUnknown), errors.Is(err, client.ErrTimeout),
		errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrNoLeader):
		return exitUnavailable
	default:
		return exitError
	}
}
