package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
)

// Nodes restarted with the configuration they were first started with, as an
// operator restarts them with their original command line: not c.restart,
// which hands them the Serf addresses of the nodes still running. A graceful
// stop takes a node out of the Raft configuration (it leaves Serf, and the
// leader removes it), so a restarted node must find the cluster by itself,
// through its Serf snapshot, for the leader to add it back.

// The bootstrap node has no start-join address: before Serf's snapshot it came
// back alone, never a voter again, and /readyz said "no raft leader" forever.
func TestClusterBootstrapNodeRestartedWithItsOwnConfigRejoins(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	before := values("before", 10)
	c.produce(before...)

	c.stop(0)
	c.waitForServers(2)
	during := values("during", 10)
	c.produce(during...)

	require.True(t, c.nodes[0].cfg.Bootstrap, "node 0 bootstraps")
	require.Empty(t, c.nodes[0].cfg.StartJoinAddrs, "node 0's start-join addresses")
	c.start(0)
	c.waitForServers(3)
	requireServerIDs(t, c, 0, "node-0", "node-1", "node-2")

	after := values("after", 5)
	c.produce(after...)
	want := append(append(append([]string{}, before...), during...), after...)
	for i := range c.nodes {
		require.Equal(t, want, c.readAll(i, uint64(len(want))), "node %d", i)
		c.requireHighest(i, uint64(len(want)))
	}
}

// A follower's start-join address is node 0, which is down when the follower
// comes back: it must not fail, but rejoin the nodes its snapshot names. Then
// node 0 comes back too, with its original configuration.
//
// The follower, not the leader, is stopped from the two-node cluster: a
// leader that stops there leaves its successor without a quorum to commit
// the removal with (see the report on issue 5).
func TestClusterFollowerRestartedWhileItsJoinAddressIsDownRejoins(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	before := values("before", 10)
	c.produce(before...)

	c.stop(0)
	c.waitForServers(2)
	follower := 1
	if c.waitForLeader() == 1 {
		follower = 2
	}
	c.stop(follower)
	c.waitForServers(1)
	during := values("during", 10)
	c.produce(during...)

	require.Equal(t, []string{c.nodes[0].cfg.BindAddr}, c.nodes[follower].cfg.StartJoinAddrs,
		"node %d's start-join addresses", follower)
	c.start(follower)
	c.waitForServers(2)
	requireServerIDs(t, c, follower, "node-1", "node-2")
	want := append(append([]string{}, before...), during...)
	require.Equal(t, want, c.readAll(follower, uint64(len(want))), "node %d", follower)
	c.requireHighest(follower, uint64(len(want)))

	c.start(0)
	c.waitForServers(3)
	requireServerIDs(t, c, 0, "node-0", "node-1", "node-2")
	after := values("after", 5)
	c.produce(after...)
	want = append(want, after...)
	for i := range c.nodes {
		require.Equal(t, want, c.readAll(i, uint64(len(want))), "node %d", i)
		c.requireHighest(i, uint64(len(want)))
	}
}

// The whole cluster stopped gracefully, followers first, then started again
// in the same order with the original configurations: the followers come
// back while the leader is down (node 0, the node they join through, is one
// of them or the leader), and the leader, last, knows nobody alive: both
// followers left before it. The followers wait instead of failing, and the
// cluster is whole again.
func TestClusterStoppedAndRestartedLeaderLast(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	before := values("before", 10)
	c.produce(before...)

	leader := c.waitForLeader()
	var order []int
	for i := len(c.nodes) - 1; i >= 0; i-- {
		if i != leader {
			order = append(order, i)
		}
	}
	order = append(order, leader)
	for _, i := range order {
		c.stop(i)
	}
	for _, i := range order {
		c.start(i)
	}
	c.waitForLeader()
	c.waitForServers(3)

	after := values("after", 5)
	c.produce(after...)
	want := append(append([]string{}, before...), after...)
	for i := range c.nodes {
		require.Equal(t, want, c.readAll(i, uint64(len(want))), "node %d", i)
		c.requireHighest(i, uint64(len(want)))
	}
}

// requireServerIDs waits until GetServers, asked of node i, lists exactly
// ids: a node catching up replays the configuration changes it missed (its
// removal, then its return), so its answer settles only then.
func requireServerIDs(t *testing.T, c *testCluster, i int, ids ...string) {
	t.Helper()
	client := c.client(i)
	require.EventuallyWithT(t, func(collect *assert.CollectT) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := client.GetServers(ctx, &api.GetServersRequest{})
		if !assert.NoError(collect, err, "node %d: GetServers", i) {
			return
		}
		assert.Equal(collect, ids, sortedIDs(res.GetServers()), "node %d: GetServers", i)
	}, 20*time.Second, 20*time.Millisecond)
}
