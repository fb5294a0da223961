// Package cliutil holds the command-line plumbing that raftd and the
// entrance share: flags from environment variables, the slog logger, the
// cluster secret file, and listen addresses and their bind errors.
//
// # Usage
//
//	if err := cliutil.ApplyEnv(cmd.Flags(), "RAFTD_", os.LookupEnv); err != nil { ... } // a usage error
//	log, err := cliutil.NewLogger(level, format, os.Stderr)
//	secret, err := cliutil.ReadSecret(path)
package cliutil

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// ApplyEnv sets every flag not given on the command line from its
// environment variable: prefix + the flag name upper-cased with '-' as '_'
// (--data-dir is RAFTD_DATA_DIR for prefix "RAFTD_"). A flag on the command
// line wins. The error names the variable and its bad value.
func ApplyEnv(fl *pflag.FlagSet, prefix string, lookupEnv func(string) (string, bool)) error {
	var err error
	fl.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" || f.Name == "version" {
			return
		}
		name := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookupEnv(name); ok {
			if serr := fl.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, serr)
			}
		}
	})
	return err
}

// NewLogger returns a slog logger writing to w at level (debug, info, warn
// or error) in format (text or json).
func NewLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// ReadSecret reads the cluster secret from path, without surrounding
// whitespace. An empty path means no secret (nil, nil); an empty file is
// an error.
func ReadSecret(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret file: %w", err)
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) == 0 {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	return secret, nil
}

// ValidListenAddr reports whether s is host:port with a numeric port (the
// host may be empty: every address).
func ValidListenAddr(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// ListenError explains a failed bind of flag's address: one in use gets
// what to do about it (others names what else may hold it); the net
// package's "listen udp ADDR:" prefix, which repeated the address, is left
// out.
func ListenError(flag, addr, others string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s: the address is already in use (%s on this machine?); stop it or choose another %s", flag, addr, others, flag)
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Err != nil {
		err = oe.Err
	}
	return fmt.Errorf("%s %s: %w", flag, addr, err)
}
