// Package testnet gives tests that start servers in other processes (or
// several in one) the ports to listen on.
package testnet

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// minPort is the lowest port FreePorts picks: above the well-known and most
// registered services' ports.
const minPort = 10000

// FreePorts returns n distinct ports that were free on 127.0.0.1 (TCP and
// UDP: Serf uses both) a moment ago, picked at random below the kernel's
// ephemeral range, or by the kernel (":0") where that range leaves too
// little room below it or cannot be read.
//
// Below the ephemeral range, no other process's ":0" listener or outgoing
// connection takes a port between the pick and the server's bind: the test
// packages run in parallel, and a port the kernel handed out once failed a
// node's start with "address already in use" (TestRunLocal's second start;
// test/chaos's third node).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	if ephemeralPortsFrom()-minPort < 1000 {
		return KernelFreePorts(t, n)
	}
	return FreePortsOn(t, []string{"127.0.0.1"}, n)
}

// FreePortsOn returns n distinct ports that were free for TCP and UDP on
// every one of ips a moment ago, picked at random below the kernel's
// ephemeral range (see FreePorts), or below 32768 where that range cannot
// be read.
func FreePortsOn(t testing.TB, ips []string, n int) []int {
	t.Helper()
	high := ephemeralPortsFrom()
	if high-minPort < 1000 {
		high = 32768
	}
	seen := map[int]bool{}
	var ports []int
	for attempt := 0; len(ports) < n; attempt++ {
		require.Less(t, attempt, 1000*n, "no %d free ports in [%d, %d) on %v", n, minPort, high, ips)
		port := minPort + rand.IntN(high-minPort)
		if seen[port] {
			continue
		}
		seen[port] = true
		if portFree(ips, port) {
			ports = append(ports, port)
		}
	}
	return ports
}

// portFree reports whether port is free for TCP and UDP on every one of ips.
func portFree(ips []string, port int) bool {
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for _, ip := range ips {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, l.Close)
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, u.Close)
	}
	return true
}

// ephemeralPortsFrom is the first port of the kernel's ephemeral range
// (Linux), which ":0" listeners and outgoing connections take ports from;
// 0 when it cannot tell.
func ephemeralPortsFrom() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	first, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return first
}

// KernelFreePorts returns n ports the kernel picked as free (":0"), from
// its ephemeral range. For servers started in the test's own process right
// after the pick: the many such ports of the agent tests would otherwise
// crowd the range below, where the tests that start other processes pick
// theirs with FreePorts (an agent test's node once took a port a
// cmd/proglog node was about to bind).
func KernelFreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	listeners := make([]net.Listener, n)
	for i := range listeners {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		listeners[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range listeners {
		require.NoError(t, l.Close())
	}
	return ports
}
