package agent

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/distlog"
)

// The readiness rule, step by step, as the watcher sees a node start,
// catch up, lose and regain its leader, and fail.
func TestReadinessRule(t *testing.T) {
	follower := func(commit, applied, last uint64) distlog.Stats {
		return distlog.Stats{State: "Follower", CommitIndex: commit, AppliedIndex: applied, LastIndex: last}
	}
	steps := []struct {
		name      string
		stats     distlog.Stats
		hasLeader bool
		want      bool
		reason    string
	}{
		{"no leader yet", follower(0, 5, 12), false, false, "no raft leader"},
		// First leader contact: the target is the larger of the commit index
		// learnt and the entries held at start (10, cut to 12 held now).
		{"leader known, behind", follower(8, 5, 12), true, false, "catching up: applied raft index 5 of 10"},
		{"commit moves, target does not", follower(30, 9, 30), true, false, "catching up: applied raft index 9 of 10"},
		{"caught up", follower(30, 10, 30), true, true, ""},
		{"lagging later is fine", follower(90, 40, 90), true, true, ""},
		{"leader lost", follower(90, 90, 90), false, false, "no raft leader"},
		{"leader back", follower(95, 91, 95), true, true, ""},
		{"state machine failed", distlog.Stats{State: "Follower", FSMError: errors.New("disk full")}, true, false,
			"state machine stopped: disk full"},
		{"raft shut down", distlog.Stats{State: "Shutdown"}, true, false, "raft is shut down"},
	}
	r := readiness{lastIndexAtStart: 10}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			got, reason := r.evaluate(step.stats, step.hasLeader)
			require.Equal(t, step.want, got, "evaluate(%+v) ready", step.stats)
			require.Equal(t, step.reason, reason, "evaluate(%+v) reason", step.stats)
		})
	}
}

// A restarted node whose unapplied tail the new leader cut off waits only
// for what it still holds.
func TestReadinessTargetAfterTruncation(t *testing.T) {
	r := readiness{lastIndexAtStart: 12}
	got, reason := r.evaluate(distlog.Stats{State: "Follower", CommitIndex: 0, AppliedIndex: 10, LastIndex: 10}, true)
	require.True(t, got, "evaluate after truncation: %s", reason)
}
