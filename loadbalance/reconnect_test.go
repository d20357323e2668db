package loadbalance

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	api "github.com/proglog/proglog/api/v1"
)

// TestBalancerRedialsAFailedServerNamedLeader: a server whose connection is
// in TRANSIENT_FAILURE (gRPC waiting out its reconnect backoff) and that the
// resolver then names leader gets a fresh SubConn at once; one that failed
// a moment ago does not (no spinning on a leader that is really gone), and
// neither does a failed follower.
func TestBalancerRedialsAFailedServerNamedLeader(t *testing.T) {
	b, cc := newTestBalancer(t)
	now := time.Unix(1000, 0)
	b.clock = func() time.Time { return now }
	require.NoError(t, b.UpdateClientConnState(resolved(0, "a:1", "b:2")))
	for _, sc := range cc.subConns {
		sc.set(connectivity.Ready)
	}
	failed := cc.subConns["b:2"]
	failed.set(connectivity.TransientFailure)

	// Named leader right after failing: not yet.
	require.NoError(t, b.UpdateClientConnState(resolved(1, "a:1", "b:2")))
	require.Equal(t, 2, cc.created, "SubConns created for a server named leader just after it failed")

	// Still failing as a follower, long after: gRPC's backoff is enough.
	now = now.Add(time.Minute)
	require.NoError(t, b.UpdateClientConnState(resolved(0, "a:1", "b:2")))
	require.Equal(t, 2, cc.created, "SubConns created for a failed follower")

	// Named leader while still failing: redialled now.
	require.NoError(t, b.UpdateClientConnState(resolved(1, "a:1", "b:2")))
	require.Equal(t, 3, cc.created, "SubConns created for a failed server named leader")
	require.True(t, failed.shutdown, "old SubConn shut down")
	fresh := cc.subConns["b:2"]
	require.NotSame(t, failed, fresh)
	require.Equal(t, 1, fresh.connects, "Connect calls on the fresh SubConn")
	// The old SubConn's last word is ignored.
	failed.set(connectivity.Shutdown)
	fresh.set(connectivity.Ready)
	got, err := pick(t, cc, api.Log_Produce_FullMethodName)
	require.NoError(t, err)
	require.Equal(t, "b:2", got, "Pick(Produce) after the redial")
}

// TestReturningServerNamedLeaderIsReachableAtOnce: a server that was down
// long enough for gRPC's reconnect backoff to grow past a second, and
// comes back as the leader, takes a running client's writes at once. The
// client's reconnect cap is set to a minute here so that only the redial
// on "named leader" can explain it (without it the next dial is seconds
// away; issue 15 saw 12.7 s).
func TestReturningServerNamedLeaderIsReachableAtOnce(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	addrs := cluster.addrs()
	var dials [3]atomic.Int64
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		for i, a := range addrs {
			if a == addr {
				dials[i].Add(1)
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	client := newTestClient(t, Config{
		Seeds:               addrs,
		ReconnectMaxBackoff: time.Minute,
		ResolveInterval:     time.Hour,
		DialOptions:         []grpc.DialOption{grpc.WithContextDialer(dialer)},
	})
	ctx := testContext(t)
	_, err := client.Produce(ctx, []byte("before"))
	require.NoError(t, err)

	cluster.server(1).stop()
	// Eight refused dials: gRPC now waits 0.1 s × 1.6^7 ≈ 2.7 s (±20%)
	// before the next.
	before := dials[1].Load()
	require.Eventually(t, func() bool { return dials[1].Load()-before >= 8 }, 20*time.Second, 10*time.Millisecond,
		"the client stopped redialling the stopped server")
	cluster.restart(t, 1)
	cluster.setLeader(1)
	client.ResolveNow()

	start := time.Now()
	callCtx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	off, err := client.Produce(callCtx, []byte("after"))
	require.NoError(t, err, "Produce to the returned leader (after %v)", time.Since(start))
	require.Equal(t, uint64(1), off)
	t.Logf("write reached the returned leader in %v", time.Since(start))
	require.Equal(t, 1, cluster.server(1).calls(api.Log_Produce_FullMethodName), "Produce calls on the returned leader")
}

// TestReturningFollowerTakesReadsSoon: with the default reconnect cap, a
// follower that was down long enough for gRPC's own backoff to reach
// seconds is back in the read rotation within about ReconnectMaxBackoff of
// listening again.
func TestReturningFollowerTakesReadsSoon(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	cluster.append([]byte("r0"))
	addrs := cluster.addrs()
	var dials atomic.Int64
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == addrs[2] {
			dials.Add(1)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	client := newTestClient(t, Config{
		Seeds:           addrs,
		ResolveInterval: time.Hour,
		DialOptions:     []grpc.DialOption{grpc.WithContextDialer(dialer)},
	})
	ctx := testContext(t)
	_, err := client.Consume(ctx, 0)
	require.NoError(t, err)

	cluster.server(2).stop()
	// gRPC's default backoff would now wait 1 s × 1.6^5 ≈ 10 s before
	// the next dial after the sixth refusal.
	before := dials.Load()
	require.Eventually(t, func() bool { return dials.Load()-before >= 6 }, 20*time.Second, 10*time.Millisecond,
		"the client stopped redialling the stopped server")
	restarted := cluster.restart(t, 2)
	start := time.Now()
	require.Eventually(t, func() bool {
		_, err := client.Consume(ctx, 0)
		require.NoError(t, err)
		return restarted.calls(api.Log_Consume_FullMethodName) > 0
	}, 2*time.Second, 20*time.Millisecond, "reads never reached the returned follower")
	t.Logf("returned follower took a read after %v", time.Since(start))
}

// TestWriteGoesAsSoonAsANewLeaderIsKnown: a write waiting out its backoff
// while the cluster elects a leader is sent as soon as the resolver, which
// polls quickly while no leader is named, learns of the new one, not when
// the backoff ends.
func TestWriteGoesAsSoonAsANewLeaderIsKnown(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client := newTestClient(t, Config{
		Seeds:           cluster.addrs(),
		ResolveInterval: time.Hour,
		// Long backoffs: a retry that waited them out would miss the
		// deadline below.
		InitialBackoff: 8 * time.Second,
		MaxBackoff:     8 * time.Second,
	})
	ctx := testContext(t)
	_, err := client.Produce(ctx, []byte("before"))
	require.NoError(t, err)

	// The leader dies; an election is under way.
	cluster.setLeader(-1)
	cluster.server(0).stop()
	done := produceAsync(ctx, client, []byte("after"))
	// The new leader is elected a moment later.
	time.AfterFunc(300*time.Millisecond, func() { cluster.setLeader(2) })
	start := time.Now()
	err = waitDone(t, done, 3*time.Second, "Produce during the election")
	require.NoError(t, err)
	t.Logf("write acknowledged %v after the election began", time.Since(start).Round(time.Millisecond))
	require.Equal(t, 1, cluster.server(2).calls(api.Log_Produce_FullMethodName), "Produce calls on the new leader")
}

// TestResolverPollsWhileLeaderless: with no leader named, the resolver
// asks again every LeaderlessResolveInterval without being asked.
func TestResolverPollsWhileLeaderless(t *testing.T) {
	cluster := newFakeCluster(t, 2)
	cluster.setLeader(-1)
	_, cc := buildResolver(t, ResolverConfig{ResolveInterval: time.Hour, LeaderlessResolveInterval: 10 * time.Millisecond}, cluster.addrs()...)
	require.Eventually(t, func() bool { return cc.stateCount() >= 5 }, 5*time.Second, 5*time.Millisecond,
		"resolutions while no leader is named")
	cluster.setLeader(1)
	require.Eventually(t, func() bool {
		s, ok := cc.lastState()
		return ok && len(leaders(s)) == 1
	}, 5*time.Second, 5*time.Millisecond, "the new leader never reported")
}
