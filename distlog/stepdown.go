package distlog

import (
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// stepDownLoop runs until closed. Whenever this node leads while its state
// machine is stopped (ErrFSMFailed: a topic write failed, a disk filled, an
// unknown command), it hands leadership over. Such a node still stores and
// acknowledges Raft entries (its Raft log is intact, so it keeps counting
// toward a quorum), but it cannot answer a write: the result of an entry
// comes from the leader's own state machine. Left leading, it failed every
// write of the cluster until someone restarted it (found by test/chaos: a
// follower whose disk had filled won the next election and the cluster
// acknowledged nothing for 90 s).
//
// Raft cannot keep a node from campaigning, so a stopped node that wins
// again is moved again; the cluster then has a leader within about one
// election timeout of every such win.
func (d *DistributedLog) stepDownLoop(closed <-chan struct{}) {
	states := make(chan raft.Observation, 1)
	observer := raft.NewObserver(states, false, func(o *raft.Observation) bool {
		state, ok := o.Data.(raft.RaftState)
		return ok && state == raft.Leader
	})
	d.raft.RegisterObserver(observer)
	defer d.raft.DeregisterObserver(observer)
	for {
		select {
		case <-closed:
			return
		case <-states:
		case <-d.fsm.failures:
		}
		err := d.fsm.Err()
		if err == nil || d.raft.State() != raft.Leader {
			continue
		}
		d.logger.Warn("this node leads but its state machine stopped; handing leadership over (restart the node to bring it back)",
			zap.Error(err))
		if err := d.raft.LeadershipTransfer().Error(); err != nil {
			// No other voter, or none caught up: the writes keep failing
			// here until the node restarts, as before.
			d.logger.Warn("leadership transfer failed", zap.Error(err))
		}
	}
}
