package discovery

import (
	"fmt"

	"go.uber.org/zap"
)

// Remove forces member name out of the cluster's member lists, as Serf's
// force-leave with pruning does: this member broadcasts that name leaves,
// and forgets it (an EventMemberReap, so Handler.Leave) once the leave has
// had time to spread (the profile's broadcast timeout plus its
// leave-propagation delay). It is for members that must not stay, such as
// one whose identity the agent refused. It blocks until the broadcast has
// gone out (at most the broadcast timeout).
//
// Serf cannot ban a member. One that is still running and holds the gossip
// key refutes the leave with a newer join; the calling member forgets it all
// the same, but others that hear the refutation before the leave keep it
// (the agent's leader calls Remove on every refused member, so each new
// leader forgets it in turn). Such a member also keeps exchanging gossip,
// and comes back into the member lists should the failure detector ever
// declare it dead and then alive again. The gossip key (Config.GossipKeys)
// is what keeps others out. Removing the local member, or one this member
// does not know, does nothing.
func (m *Membership) Remove(name string) error {
	if name == m.cfg.NodeName {
		return nil
	}
	known := false
	for _, member := range m.serf.Members() {
		if member.Name == name {
			known = true
			break
		}
	}
	if !known {
		return nil
	}
	if err := m.serf.RemoveFailedNodePrune(name); err != nil {
		return fmt.Errorf("discovery: remove member %s: %w", name, err)
	}
	m.logger.Info("member removed from gossip", zap.String("member", name))
	return nil
}
