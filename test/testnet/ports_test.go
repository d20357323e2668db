package testnet

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFreePorts: the ports are distinct, a server can listen on each (TCP
// and UDP), and on Linux they come from below the ephemeral range.
func TestFreePorts(t *testing.T) {
	ports := FreePorts(t, 9)
	require.Len(t, ports, 9)
	seen := map[int]bool{}
	high := ephemeralPortsFrom()
	for _, port := range ports {
		require.False(t, seen[port], "port %d twice", port)
		seen[port] = true
		if high-minPort >= 1000 {
			require.GreaterOrEqual(t, port, minPort)
			require.Less(t, port, high, "port %d in the ephemeral range from %d", port, high)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		require.NoError(t, err)
		require.NoError(t, l.Close())
		pc, err := net.ListenPacket("udp", addr)
		require.NoError(t, err)
		require.NoError(t, pc.Close())
	}
}
