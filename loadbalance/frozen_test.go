package loadbalance

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
)

// Tests of a server that is paused (SIGSTOP): its connections stay open, and
// nothing it was sent is ever answered.

// produceAsync runs client.Produce on a goroutine; the channel gets its
// result.
func produceAsync(ctx context.Context, client *Client, value []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := client.Produce(ctx, value)
		done <- err
	}()
	return done
}

// waitDone waits up to timeout for a result on done.
func waitDone(t *testing.T, done <-chan error, timeout time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %v", what, timeout)
		return nil
	}
}

// A leader that freezes with a write in flight must not hold the write
// until the caller's deadline.
func TestProduceMovesOffAFrozenLeader(t *testing.T) {
	produce := api.Log_Produce_FullMethodName
	t.Run("attempt timeout retries the write", func(t *testing.T) {
		cluster := newFakeCluster(t, 3)
		client := newTestClient(t, Config{
			Seeds: cluster.addrs(), AttemptTimeout: 300 * time.Millisecond,
			ResolveInterval: time.Hour, ResolveTimeout: 200 * time.Millisecond,
		})
		ctx := testContext(t)
		_, err := client.Produce(ctx, []byte("warm-up"))
		require.NoError(t, err)

		// Frozen, and still the leader as far as anyone knows (the
		// election has not ended): only the attempt timeout can get the
		// write off the first attempt.
		cluster.servers[0].freeze()
		done := produceAsync(ctx, client, []byte("v"))
		require.Eventually(t, func() bool { return cluster.servers[0].calls(produce) >= 3 },
			5*time.Second, 10*time.Millisecond,
			"Produce calls on the frozen leader: want the warm-up and at least two timed-out attempts")

		cluster.setLeader(1)
		client.ResolveNow()
		require.NoError(t, waitDone(t, done, 5*time.Second, "Produce"), "Produce after the new leader")
		require.Equal(t, 1, cluster.servers[1].calls(produce), "Produce calls on the new leader")
	})

	t.Run("a new leader ends the attempt in flight", func(t *testing.T) {
		cluster := newFakeCluster(t, 3)
		client := newTestClient(t, Config{
			// Only the leader change can end the first attempt.
			Seeds: cluster.addrs(), AttemptTimeout: time.Hour,
			ResolveInterval: time.Hour, ResolveTimeout: 200 * time.Millisecond,
		})
		ctx := testContext(t)
		_, err := client.Produce(ctx, []byte("warm-up"))
		require.NoError(t, err)

		cluster.servers[0].freeze()
		done := produceAsync(ctx, client, []byte("v"))
		require.Eventually(t, func() bool { return cluster.servers[0].calls(produce) == 2 },
			5*time.Second, 10*time.Millisecond, "the write never reached the frozen leader")
		cluster.setLeader(1)
		client.ResolveNow()
		require.NoError(t, waitDone(t, done, 5*time.Second, "Produce"), "Produce after the new leader")
		require.Equal(t, []int{2, 1, 0}, cluster.callCounts(produce), "Produce calls per server")
	})

	t.Run("a slow write asks the resolver", func(t *testing.T) {
		const attemptTimeout = 4 * time.Second
		cluster := newFakeCluster(t, 3)
		client := newTestClient(t, Config{
			Seeds: cluster.addrs(), AttemptTimeout: attemptTimeout,
			ResolveInterval: time.Hour, ResolveTimeout: 200 * time.Millisecond,
		})
		ctx := testContext(t)
		_, err := client.Produce(ctx, []byte("warm-up"))
		require.NoError(t, err)

		// The cluster has moved on; nobody tells the client.
		cluster.servers[0].freeze()
		cluster.setLeader(1)
		start := time.Now()
		off, err := client.Produce(ctx, []byte("v"))
		elapsed := time.Since(start)
		require.NoError(t, err)
		require.Equal(t, uint64(1), off, "Produce offset")
		require.Less(t, elapsed, attemptTimeout, "Produce waited out the attempt timeout")
		require.Equal(t, []int{2, 1, 0}, cluster.callCounts(produce), "Produce calls per server")
		t.Logf("write moved off the frozen leader in %v", elapsed)
	})
}

// Reads on a frozen follower time out and go to the other follower.
func TestConsumeRetriesPastAFrozenFollower(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	cluster.append([]byte("v0"))
	client := newTestClient(t, Config{Seeds: cluster.addrs(), AttemptTimeout: 200 * time.Millisecond})
	ctx := testContext(t)
	waitBothFollowers(t, ctx, client, cluster)

	cluster.servers[1].freeze()
	before := cluster.servers[1].calls(api.Log_Consume_FullMethodName)
	for i := range 6 {
		rec, err := client.Consume(ctx, 0)
		require.NoError(t, err, "Consume #%d with a frozen follower", i)
		require.Equal(t, "v0", string(rec.GetValue()), "Consume(0) #%d", i)
	}
	require.Greater(t, cluster.servers[1].calls(api.Log_Consume_FullMethodName), before,
		"no read was sent to the frozen follower, so nothing was tested")
}

// waitBothFollowers reads until both followers have served a read, i.e. both
// are in the picker.
func waitBothFollowers(t *testing.T, ctx context.Context, client *Client, cluster *fakeCluster) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := client.Consume(ctx, 0)
		require.NoError(t, err)
		got := cluster.callCounts(api.Log_Consume_FullMethodName)
		return got[1] > 0 && got[2] > 0
	}, 5*time.Second, 10*time.Millisecond, "reads never reached both followers")
}

// A stream opened on a frozen server gets no headers; it is abandoned after
// AttemptTimeout and opened elsewhere (keepalive would not help: a frozen
// fakeServer still answers pings).
func TestConsumeStreamAbandonsAStreamThatDoesNotOpen(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	for i := range 3 {
		cluster.append(fmt.Appendf(nil, "v%d", i))
	}
	client := newTestClient(t, Config{
		Seeds: cluster.addrs(), AttemptTimeout: 300 * time.Millisecond,
		InitialBackoff: 10 * time.Millisecond,
	})
	ctx := testContext(t)
	waitBothFollowers(t, ctx, client, cluster)
	// Reads alternate between the two followers: after one served by
	// server 2, the next (the stream) goes to server 1.
	for {
		before := cluster.servers[2].calls(api.Log_Consume_FullMethodName)
		_, err := client.Consume(ctx, 0)
		require.NoError(t, err)
		if cluster.servers[2].calls(api.Log_Consume_FullMethodName) > before {
			break
		}
	}
	cluster.servers[1].freeze()

	records := make(chan uint64, 16)
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- client.ConsumeStream(streamCtx, 0, func(r *api.Record) error {
			records <- r.GetOffset()
			return nil
		})
	}()
	for want := uint64(0); want < 3; want++ {
		select {
		case got := <-records:
			require.Equal(t, want, got, "offset handed to fn")
		case err := <-done:
			t.Fatalf("ConsumeStream ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatalf("no record %d: the stream stayed on the frozen server", want)
		}
	}
	require.Equal(t, 1, cluster.servers[1].calls(api.Log_ConsumeStream_FullMethodName),
		"streams sent to the frozen server (the first pick should have gone there)")
	cancel()
	require.ErrorIs(t, waitDone(t, done, 5*time.Second, "ConsumeStream"), context.Canceled)
}

// The resolver does not ask a server that failed to answer before the
// others: a paused server would cost every resolution a ResolveTimeout.
func TestResolverAsksUnansweredServersLast(t *testing.T) {
	getServers := api.Log_GetServers_FullMethodName
	cluster := newFakeCluster(t, 3)
	cluster.servers[0].freeze()
	client, b := newTestConn(t, ResolverConfig{ResolveInterval: time.Hour, ResolveTimeout: 200 * time.Millisecond},
		cluster.addrs()...)
	startResolver(t, client)
	// The first resolution asks server 0 (first seed), gives up on it, and
	// gets its answer from server 1.
	require.Eventually(t, func() bool { return cluster.servers[1].calls(getServers) > 0 },
		5*time.Second, 10*time.Millisecond, "server 1 never asked")
	require.Equal(t, 1, cluster.servers[0].calls(getServers), "GetServers calls on the frozen server")

	// Server 1 goes; the next resolution must ask server 2 before the
	// frozen first seed.
	cluster.servers[1].stop()
	b.ResolveNow()
	require.Eventually(t, func() bool { return cluster.servers[2].calls(getServers) > 0 },
		5*time.Second, 10*time.Millisecond, "server 2 never asked")
	require.Equal(t, 1, cluster.servers[0].calls(getServers), "GetServers calls on the frozen server")
}

// Leader-change watchers run once, after the change, and not for a first
// leader.
func TestBuilderLeaderWatchers(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client, b := newTestConn(t, ResolverConfig{ResolveInterval: time.Hour}, cluster.addrs()...)
	startResolver(t, client)
	var mu sync.Mutex
	calls := 0
	stop := b.onLeaderChange(func() {
		mu.Lock()
		defer mu.Unlock()
		calls++
	})
	defer stop()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return calls
	}
	// The first resolution names leader 0: not a change.
	require.Eventually(t, func() bool { return cluster.servers[0].calls(api.Log_GetServers_FullMethodName) > 0 },
		5*time.Second, 10*time.Millisecond)
	b.ResolveNow()
	require.Eventually(t, func() bool { return cluster.servers[0].calls(api.Log_GetServers_FullMethodName) > 1 },
		5*time.Second, 10*time.Millisecond)
	require.Equal(t, 0, count(), "watcher calls without a leader change")

	cluster.setLeader(2)
	b.ResolveNow()
	require.Eventually(t, func() bool { return count() == 1 }, 5*time.Second, 10*time.Millisecond,
		"watcher not called after the leader changed")
	cluster.setLeader(1)
	b.ResolveNow()
	require.Eventually(t, func() bool { return cluster.servers[0].calls(api.Log_GetServers_FullMethodName) > 3 },
		5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, count(), "watcher calls: once only")
}

// startResolver makes one read through client: a new ClientConn builds its
// resolver only when it leaves idle mode, at its first call.
func startResolver(t *testing.T, client api.LogClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = client.Consume(ctx, &api.ConsumeRequest{Offset: 0}) // any answer will do
}
