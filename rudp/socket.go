package rudp

import (
	"context"
	"fmt"
	"net"
	"syscall"
)

// SocketOptions configures ListenUDP.
type SocketOptions struct {
	// ReadBuffer is the socket receive buffer (SO_RCVBUF) in bytes; 0 means
	// 4 MiB. The kernel may cap it (net.core.rmem_max) unless the process
	// may use SO_RCVBUFFORCE.
	ReadBuffer int
	// WriteBuffer is the socket send buffer (SO_SNDBUF) in bytes; 0 means
	// 1 MiB.
	WriteBuffer int
	// ReuseAddr sets SO_REUSEADDR so several processes can bind one
	// broadcast port (discovery listeners on 0.0.0.0:P). Never use it for
	// the unicast port: unicast datagrams would all go to one of the sockets.
	ReuseAddr bool
}

// ListenUDP opens a UDP socket configured for an Endpoint: SO_BROADCAST
// on, IP_MTU_DISCOVER=IP_PMTUDISC_DO (an oversize datagram fails with
// EMSGSIZE instead of being fragmented by IP), and large buffers. network
// is "udp", "udp4" or "udp6"; addr is host:port.
func ListenUDP(ctx context.Context, network, addr string, opts SocketOptions) (*net.UDPConn, error) {
	var sockErr error
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) { sockErr = setSockOpts(int(fd), network, opts) })
		if err != nil {
			return err
		}
		return sockErr
	}}
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("rudp: listen %s %s: %w", network, addr, err)
	}
	uc := pc.(*net.UDPConn)
	rb, wb := opts.ReadBuffer, opts.WriteBuffer
	if rb == 0 {
		rb = 4 << 20
	}
	if wb == 0 {
		wb = 1 << 20
	}
	if err := setBuffers(uc, rb, wb); err != nil {
		uc.Close()
		return nil, fmt.Errorf("rudp: listen %s %s: buffers: %w", network, addr, err)
	}
	return uc, nil
}
