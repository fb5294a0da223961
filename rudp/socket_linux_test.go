//go:build linux

package rudp

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func rmemMax(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func checkPMTUDiscoverDo(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var v int
	var gerr error
	rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER)
	})
	if gerr != nil {
		return gerr
	}
	if v != syscall.IP_PMTUDISC_DO {
		return fmt.Errorf("IP_MTU_DISCOVER = %d, want IP_PMTUDISC_DO (%d)", v, syscall.IP_PMTUDISC_DO)
	}
	return nil
}
