package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
)

// cmdPorts prints N distinct ports on 127.0.0.1 that were free for both TCP
// and UDP a moment ago (the kernel picks them; they are released before
// the command exits, so a race with another program is possible but rare).
func cmdPorts(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ports", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("ports needs one argument: how many")
	}
	n, err := strconv.Atoi(fs.Arg(0))
	if err != nil || n < 1 || n > 1000 {
		return errors.New("ports: the count must be 1..1000")
	}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 20*n {
			return errors.New("ports: could not find enough free ports on 127.0.0.1")
		}
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("ports: listen: %w", err)
		}
		closers = append(closers, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // UDP port taken: try another
		}
		closers = append(closers, u)
		ports = append(ports, port)
	}
	for _, p := range ports {
		fmt.Fprintln(stdout, p)
	}
	return nil
}
