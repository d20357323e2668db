package agent

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/soheilhy/cmux"
	"github.com/stretchr/testify/require"
)

// Closing the gRPC branch must leave the other branch (Raft) accepting.
func TestBranchListenerCloseKeepsRoot(t *testing.T) {
	root, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mux := cmux.New(root)
	other := mux.Match(isRaft)
	var wg sync.WaitGroup
	branch := newBranchListener(mux.Match(cmux.Any()), &wg)
	serveDone := make(chan error, 1)
	go func() { serveDone <- mux.Serve() }()

	require.NoError(t, branch.Close())
	_, err = branch.Accept()
	require.ErrorIs(t, err, net.ErrClosed)

	// A Raft connection still gets through after the branch closed.
	conn, err := net.Dial("tcp", root.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte{1, 'x'})
	require.NoError(t, err)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := other.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	select {
	case c := <-accepted:
		b := make([]byte, 2)
		_, err := io.ReadFull(c, b)
		require.NoError(t, err)
		require.Equal(t, []byte{1, 'x'}, b)
		require.NoError(t, c.Close())
	case <-time.After(10 * time.Second):
		t.Fatal("the other branch stopped accepting when the wrapped branch closed")
	}

	mux.Close()
	require.NoError(t, root.Close())
	select {
	case err := <-serveDone:
		require.True(t, err == nil || errors.Is(err, net.ErrClosed) || isClosedErr(err), "Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("mux.Serve did not return")
	}
	wg.Wait() // the forwarding goroutine exits with the mux
}
