package agent

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog"
)

func TestLeaderlessReasons(t *testing.T) {
	candidate := distlog.Stats{State: "Candidate", Term: 7}
	servers := func(ids ...string) []*api.Server {
		var s []*api.Server
		for _, id := range ids {
			s = append(s, &api.Server{Id: id})
		}
		return s
	}
	tests := []struct {
		name      string
		servers   []*api.Server
		configErr error
		want      []string
	}{
		{
			name:    "too many voters for the nodes up",
			servers: servers("node-1", "node-2", "node-3", "rogue-1", "rogue-2"),
			want: []string{
				"this node is Candidate in term 7",
				"the raft configuration has 5 voters (node-1, node-2, node-3, rogue-1, rogue-2): a leader needs 3 of them",
			},
		},
		{
			name:    "never added",
			servers: servers(),
			want: []string{
				"this node is Candidate in term 7",
				"this node is not in the raft configuration: no leader has added it (a leader logs 'member refused as a raft voter' with the reason when it refuses one)",
			},
		},
		{
			name:      "configuration unreadable",
			configErr: errors.New("raft is shut down"),
			want:      []string{"this node is Candidate in term 7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, leaderlessReasons(candidate, tt.servers, tt.configErr, "node-1"))
		})
	}
}

// A Candidate knows no leader even when Raft still names one (see
// knowsLeader): a node in that state must not stay ready.
func TestKnowsLeader(t *testing.T) {
	tests := []struct {
		leaderID, state string
		want            bool
	}{
		{"node-0", "Follower", true},
		{"node-1", "Leader", true},
		{"", "Follower", false},
		{"node-0", "Candidate", false},
		{"", "Candidate", false},
	}
	for _, tt := range tests {
		got := knowsLeader(tt.leaderID, distlog.Stats{State: tt.state})
		require.Equal(t, tt.want, got, "knowsLeader(%q, %s)", tt.leaderID, tt.state)
	}
}
