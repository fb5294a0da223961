//go:build linux

package rudp

import (
	"net"
	"syscall"
)

func setSockOpts(fd int, network string, opts SocketOptions) error {
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1); err != nil {
		return err
	}
	if opts.ReuseAddr {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return err
		}
	}
	if network == "udp6" {
		return syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_MTU_DISCOVER, syscall.IPV6_PMTUDISC_DO)
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO); err != nil {
		return err
	}
	if network == "udp" { // dual-stack socket: IPv6 part too, where supported
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_MTU_DISCOVER, syscall.IPV6_PMTUDISC_DO)
	}
	return nil
}

// setBuffers sizes the socket buffers, beyond net.core.rmem_max/wmem_max
// when the process is allowed to (SO_RCVBUFFORCE).
func setBuffers(c *net.UDPConn, read, write int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var forced bool
	rc.Control(func(fd uintptr) {
		forced = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, read) == nil &&
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, write) == nil
	})
	if forced {
		return nil
	}
	if err := c.SetReadBuffer(read); err != nil {
		return err
	}
	return c.SetWriteBuffer(write)
}

// socketReadBuffer returns the kernel's SO_RCVBUF for c (doubled by Linux
// for bookkeeping).
func socketReadBuffer(c *net.UDPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var gerr error
	rc.Control(func(fd uintptr) { n, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	return n, gerr
}
