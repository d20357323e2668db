package loadbalance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamValues sends n values "v0".."v<n-1>" on a ProduceStream, calling
// between(i) before value i, then CloseSend; it returns the offsets Recv
// gave, in order, and Recv's final error.
func streamValues(t *testing.T, client *Client, n int, between func(i int)) ([]uint64, error) {
	t.Helper()
	ctx := testContext(t)
	stream, err := client.ProduceStream(ctx)
	require.NoError(t, err)
	defer stream.Close()
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			between(i)
			if err := stream.Send([]byte(fmt.Sprintf("v%d", i))); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	var offsets []uint64
	for {
		off, err := stream.Recv()
		if err != nil {
			require.NoError(t, <-sendErr, "Send")
			return offsets, err
		}
		offsets = append(offsets, off)
	}
}

// requireAtOffsets checks that value i is in the log at offsets[i].
func requireAtOffsets(t *testing.T, cluster *fakeCluster, offsets []uint64) {
	t.Helper()
	for i, off := range offsets {
		rec, ok, _ := cluster.record(off)
		require.True(t, ok, "record %d missing", off)
		require.Equal(t, fmt.Sprintf("v%d", i), string(rec.GetValue()), "value at offset %d (value #%d)", off, i)
	}
}

func TestProduceStreamAcknowledgesInOrder(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client := newTestClient(t, Config{Seeds: cluster.addrs()[1:2]})
	const n = 200
	offsets, err := streamValues(t, client, n, func(int) {})
	require.ErrorIs(t, err, io.EOF, "Recv after the last offset")
	require.Len(t, offsets, n)
	for i, off := range offsets {
		require.Equal(t, uint64(i), off, "offset of value #%d", i)
	}
	requireAtOffsets(t, cluster, offsets)
}

// TestProduceStreamFailsOverToTheNewLeader: the leader stops mid-stream
// and another takes over; every value is acknowledged, in order, each
// offset holding its value, without the caller doing anything.
func TestProduceStreamFailsOverToTheNewLeader(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client := newTestClient(t, Config{Seeds: cluster.addrs()})
	const n = 300
	offsets, err := streamValues(t, client, n, func(i int) {
		switch i {
		case 100:
			// The old leader goes; the others refuse with NOT_LEADER
			// until one is elected.
			cluster.setLeader(-1)
			cluster.server(0).stop()
		case 120:
			cluster.setLeader(2)
		}
	})
	require.ErrorIs(t, err, io.EOF, "Recv after the last offset")
	require.Len(t, offsets, n, "offsets received")
	for i := 1; i < n; i++ {
		require.Greater(t, offsets[i], offsets[i-1], "offsets in order at #%d", i)
	}
	requireAtOffsets(t, cluster, offsets)
}

// TestProduceStreamMovesOffAFrozenLeader: a leader that stops answering
// (paused) with values in flight is left after AttemptTimeout, or sooner
// when the resolver names another leader.
func TestProduceStreamMovesOffAFrozenLeader(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client := newTestClient(t, Config{Seeds: cluster.addrs(), AttemptTimeout: 400 * time.Millisecond})
	ctx := testContext(t)
	stream, err := client.ProduceStream(ctx)
	require.NoError(t, err)
	defer stream.Close()
	require.NoError(t, stream.Send([]byte("v0")))
	off, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, uint64(0), off)

	// The leader stops answering; the cluster elects another, which the
	// client learns when the stalled value makes it ask the resolver.
	cluster.server(0).freeze()
	cluster.setLeader(1)
	require.NoError(t, stream.Send([]byte("v1")))
	require.NoError(t, stream.CloseSend())
	off, err = stream.Recv()
	require.NoError(t, err)
	rec, ok, _ := cluster.record(off)
	require.True(t, ok)
	require.Equal(t, "v1", string(rec.GetValue()))
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF)
}

// TestProduceStreamGivesUp: with no leader, the stream fails after
// RetryTimeout with the cause, and Send then fails too.
func TestProduceStreamGivesUp(t *testing.T) {
	cluster := newFakeCluster(t, 2)
	cluster.setLeader(-1)
	client := newTestClient(t, Config{Seeds: cluster.addrs(), RetryTimeout: 500 * time.Millisecond})
	stream, err := client.ProduceStream(testContext(t))
	require.NoError(t, err)
	defer stream.Close()
	require.NoError(t, stream.Send([]byte("v0")))
	_, err = stream.Recv()
	require.Error(t, err)
	require.False(t, errors.Is(err, io.EOF), "Recv = %v, want the failure", err)
	require.Equal(t, codes.Unavailable, status.Code(err), "Recv = %v", err)
	require.Equal(t, 1, stream.Unacknowledged())
	require.Error(t, stream.Send([]byte("v1")), "Send after the stream failed")
}

// TestProduceStreamCloseAbandons: Close ends a stream that is still
// retrying, and Recv reports the cancellation.
func TestProduceStreamCloseAbandons(t *testing.T) {
	cluster := newFakeCluster(t, 1)
	cluster.setLeader(-1)
	client := newTestClient(t, Config{Seeds: cluster.addrs()})
	stream, err := client.ProduceStream(context.Background())
	require.NoError(t, err)
	require.NoError(t, stream.Send([]byte("v0")))
	stream.Close()
	stream.Close()
	_, err = stream.Recv()
	require.ErrorIs(t, err, context.Canceled)
}
