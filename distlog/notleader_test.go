package distlog

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
)

// TestDistributedLogLeadershipLostInFlightIsUnknown: a write the leader
// took and could not commit before losing its leadership (its followers
// went away) fails with ErrNotLeader marked OutcomeUnknown, since the next
// leader may commit it; a follower's refusal is not marked.
func TestDistributedLogLeadershipLostInFlightIsUnknown(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.waitLeader()
	c.appendValues("before")
	follower := c.followers(leader)[0]
	_, err := appendOne(context.Background(), follower.log, &api.Record{Value: []byte("x")})
	var refusal api.ErrNotLeader
	require.ErrorAs(t, err, &refusal)
	require.False(t, refusal.OutcomeUnknown, "a follower's refusal: %v", err)

	for _, f := range c.followers(leader) {
		c.stop(slices.Index(c.nodes, f))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err = appendOne(ctx, leader.log, &api.Record{Value: []byte("in flight")})
	require.ErrorAs(t, err, &refusal, "append on a leader that loses its quorum")
	require.True(t, refusal.OutcomeUnknown, "append in flight when leadership was lost: %v", err)
}
