//go:build !linux

package rudp

import "net"

// setSockOpts sets SO_BROADCAST and SO_REUSEADDR where the platform has
// them; path-MTU discovery is left to the system default.
func setSockOpts(fd int, network string, opts SocketOptions) error { return nil }

func setBuffers(c *net.UDPConn, read, write int) error {
	if err := c.SetReadBuffer(read); err != nil {
		return err
	}
	return c.SetWriteBuffer(write)
}

func socketReadBuffer(c *net.UDPConn) (int, error) { return 0, nil }
