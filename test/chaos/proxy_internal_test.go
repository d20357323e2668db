package chaos

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTCPInodeTellsConnectionsSharingALocalPortApart: Linux hands out the
// same ephemeral port for connections to different destinations; the
// proxy must tell the two apart, or a node's connection is taken for the
// harness's own and a partition never cuts it.
func TestTCPInodeTellsConnectionsSharingALocalPortApart(t *testing.T) {
	var peers [2]*net.TCPAddr
	for i := range peers {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = lis.Close() })
		go func() {
			for {
				conn, err := lis.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { _ = conn.Close() })
			}
		}()
		peers[i] = lis.Addr().(*net.TCPAddr)
	}
	reuse := func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}
	first, err := (&net.Dialer{Control: reuse, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).Dial("tcp", peers[0].String())
	require.NoError(t, err)
	defer first.Close()
	local := first.LocalAddr().(*net.TCPAddr)
	second, err := (&net.Dialer{Control: reuse, LocalAddr: local}).Dial("tcp", peers[1].String())
	require.NoError(t, err)
	defer second.Close()
	require.Equal(t, local.String(), second.LocalAddr().String())

	a, err := tcpInode(local, peers[0])
	require.NoError(t, err)
	b, err := tcpInode(local, peers[1])
	require.NoError(t, err)
	require.NotEmpty(t, a)
	require.NotEmpty(t, b)
	require.NotEqual(t, a, b, "two sockets on one local port must be told apart by their peers")
}
