package distlog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
)

// A leader whose state machine stopped hands leadership over, and the
// cluster takes writes again; an append it still answers says the outcome
// is unknown (the entry may commit), not an internal error.
func TestDistributedLogLeaderWithStoppedStateMachineStepsDown(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.waitLeader()
	c.appendTopic(DefaultTopic, "before")

	old.log.fsm.mu.Lock()
	old.log.fsm.stopLocked(errors.New("injected: the disk failed"))
	old.log.fsm.mu.Unlock()

	require.Eventually(t, func() bool {
		l := c.waitLeader()
		return l != old && old.log.raft.State() != raft.Leader
	}, waitTimeout, 10*time.Millisecond, "the leader with a stopped state machine kept leading")
	offsets := c.appendTopic(DefaultTopic, "after")
	require.Equal(t, uint64(1), offsets[0])
	for _, n := range c.followers(old) {
		rec, err := n.log.Read(context.Background(), DefaultTopic, 1)
		require.NoError(t, err)
		require.Equal(t, "after", string(rec.GetValue()))
	}
}

// The apply path maps a stopped state machine to an unknown outcome: the
// entry is in Raft's log and the other nodes apply it.
func TestDistributedLogStoppedStateMachineIsAnUnknownOutcome(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	l := c.waitLeader()
	l.log.fsm.mu.Lock()
	l.log.fsm.stopLocked(errors.New("injected: the disk failed"))
	l.log.fsm.mu.Unlock()
	_, err := l.log.AppendBatch(context.Background(), DefaultTopic, []*api.Record{{Value: []byte("v")}})
	var notLeader api.ErrNotLeader
	require.ErrorAs(t, err, &notLeader)
	require.True(t, notLeader.OutcomeUnknown)
}
