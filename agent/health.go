package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/distlog"
)

// readinessRecheck is how often the readiness watcher looks again when no
// notification woke it: Raft announces leader changes, and the data log
// announces appends, but nothing announces the application of a Raft entry
// that carries no records (a configuration change, a new leader's no-op)
// or a failure of the state machine.
const readinessRecheck = 250 * time.Millisecond

// readiness is the rule the node's health follows: it is ready once it
// knows a leader and has applied the Raft log up to the point it saw when
// it first found one, and stays ready while it knows a leader and its state
// machine works. The watcher goroutine owns it.
type readiness struct {
	// lastIndexAtStart is the last Raft index on disk when the node started:
	// what a restarted node must apply before it serves reads.
	lastIndexAtStart uint64
	// target is the Raft index to apply before the node is first ready, set
	// when a leader is first known; 0 until then.
	target    uint64
	targetSet bool
	// caughtUp latches once target has been applied.
	caughtUp bool
}

// evaluate returns whether the node is ready, and why not when it is not.
func (r *readiness) evaluate(s distlog.Stats, hasLeader bool) (bool, string) {
	switch {
	case s.FSMError != nil:
		return false, fmt.Sprintf("state machine stopped: %v", s.FSMError)
	case s.State == raft.Shutdown.String():
		return false, "raft is shut down"
	case !hasLeader:
		return false, "no raft leader"
	}
	if !r.targetSet {
		// The commit index a follower learns from the leader's first
		// message; on a restarted node also the entries it already holds
		// (unless the leader has since cut them off).
		r.target = max(s.CommitIndex, min(r.lastIndexAtStart, s.LastIndex))
		r.targetSet = true
	}
	if !r.caughtUp {
		if s.AppliedIndex < r.target {
			return false, fmt.Sprintf("catching up: applied raft index %d of %d", s.AppliedIndex, r.target)
		}
		r.caughtUp = true
	}
	return true, ""
}

// knowsLeader reports whether this node knows a leader: Raft names one
// (leaderID) and this node is not campaigning. hashicorp/raft can name a
// leader to a Candidate: one that became candidate by a leadership transfer
// records the sender of an AppendEntries of its own term as leader and stays
// candidate, and no election timeout clears it; once that leader is gone,
// the node would report a leader (and stay ready) while it campaigns in
// vain. A candidate knows no leader, by definition.
func knowsLeader(leaderID string, s distlog.Stats) bool {
	return leaderID != "" && s.State != raft.Candidate.String()
}

// watchReadiness keeps the node's health (gRPC health service, /readyz) up
// to date until Shutdown. It wakes on Raft's leader and state
// observations, on appends to the data log while it is catching up, and
// every readinessRecheck for what has no notification.
func (a *Agent) watchReadiness() {
	observations := make(chan raft.Observation, 1)
	observer := raft.NewObserver(observations, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		default:
			return false
		}
	})
	r := a.log.Raft()
	r.RegisterObserver(observer)
	defer r.DeregisterObserver(observer)
	recheck := time.NewTicker(readinessRecheck)
	defer recheck.Stop()

	state := readiness{lastIndexAtStart: a.obs.startIndex}
	for {
		// Take the channel before reading the state, so that an append
		// between the two is not missed.
		var appended <-chan struct{}
		if !state.caughtUp {
			appended = a.log.Appended(distlog.DefaultTopic)
		}
		leaderID, _ := a.log.Leader()
		stats := a.log.Stats()
		hasLeader := knowsLeader(leaderID, stats)
		ready, reason := state.evaluate(stats, hasLeader)
		// Reasons compose: each check adds its own, and /readyz lists
		// them all, separated by "; ".
		reasons := []string{reason}
		if !ready && !hasLeader && stats.State != raft.Shutdown.String() {
			servers, err := a.log.GetServers()
			reasons = append(reasons, leaderlessReasons(stats, servers, err, a.cfg.NodeName)...)
		}
		if failures := a.peerTLS.failures(); !ready && failures != "" {
			// Why there is no leader, or no progress: say it where an
			// operator looks first.
			reasons = append(reasons, failures)
		}
		a.obs.health.Set(ready, strings.Join(reasons, "; "))
		if stats.FSMError != nil {
			// Only a restart brings the state machine back (it replays
			// the Raft log): say so where liveness probes look.
			a.obs.health.SetDead(fmt.Sprintf("state machine stopped, restart the node: %v", stats.FSMError))
		}
		if stats.State == raft.Shutdown.String() {
			// The log is closing (or crashed, in fault tests): its Appended
			// channel stays closed from now on and would spin this loop.
			appended = nil
		}
		select {
		case <-a.stopping:
			return
		case <-observations:
		case <-appended:
		case <-recheck.C:
		}
	}
}
