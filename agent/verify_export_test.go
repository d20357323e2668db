package agent

import "github.com/hashicorp/serf/serf"

// SerfMembers returns the members this node's Serf knows, for tests that
// check a refused member was removed.
func (a *Agent) SerfMembers() []serf.Member {
	return a.membership.Members()
}
