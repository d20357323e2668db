package agent

import (
	"fmt"
	"strings"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog"
)

// leaderlessReasons explain, after "no raft leader", why this node knows
// none, from what it holds itself: its Raft state, and the configuration it
// has (servers, unless configErr says it could not be read). An operator reading /readyz then sees
// a node the leader never added, or a configuration with more voters than
// the cluster has nodes, the way issue 12's rogue voters took a quorum away.
func leaderlessReasons(s distlog.Stats, servers []*api.Server, configErr error, self string) []string {
	reasons := []string{fmt.Sprintf("this node is %s in term %d", s.State, s.Term)}
	if configErr != nil {
		return reasons
	}
	ids := make([]string, 0, len(servers))
	member := false
	for _, srv := range servers {
		ids = append(ids, srv.GetId())
		member = member || srv.GetId() == self
	}
	if !member {
		return append(reasons, "this node is not in the raft configuration: no leader has added it "+
			"(a leader logs 'member refused as a raft voter' with the reason when it refuses one)")
	}
	return append(reasons, fmt.Sprintf("the raft configuration has %d voters (%s): a leader needs %d of them",
		len(ids), strings.Join(ids, ", "), len(ids)/2+1))
}
