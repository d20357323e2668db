package agent

import (
	"errors"
	"time"

	"github.com/hashicorp/serf/serf"
	"go.uber.org/zap"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/discovery"
)

// membershipHandler turns Serf's view of the cluster into Raft configuration
// changes. Only the leader can change the configuration; on the other nodes
// the calls are no-ops, and the leader's reconcile loop catches up on any
// event it missed (for instance a node that joined before there was a
// leader).
type membershipHandler struct{ a *Agent }

var _ discovery.Handler = membershipHandler{}

// Join adds the member as a voter when this node leads, once the member
// has proved that it may be one (verify.go).
func (h membershipHandler) Join(name, addr string) error {
	servers, err := h.a.log.GetServers()
	if err != nil || !leads(servers, h.a.cfg.NodeName) {
		return nil
	}
	return h.a.admit(name, addr, servers, true)
}

// Leave removes a member that left gracefully when this node leads. A member
// Serf merely suspects to have failed stays a voter: it is most likely
// restarting and will catch up, and removing it would shrink the quorum
// behind the operator's back.
func (h membershipHandler) Leave(name string) error {
	if !h.a.isLeader() || h.a.memberStatus(name) == serf.StatusFailed {
		return nil
	}
	return h.a.log.Leave(name)
}

// isLeader reports whether this node currently leads the Raft cluster.
func (a *Agent) isLeader() bool {
	servers, err := a.log.GetServers()
	return err == nil && leads(servers, a.cfg.NodeName)
}

// memberAlive reports whether Serf sees the named member alive.
func (a *Agent) memberAlive(name string) bool {
	return a.memberStatus(name) == serf.StatusAlive
}

// memberStatus is Serf's status of the named member, StatusNone if unknown.
func (a *Agent) memberStatus(name string) serf.MemberStatus {
	if a.membership == nil {
		return serf.StatusNone
	}
	for _, m := range a.membership.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return serf.StatusNone
}

// reconcileLoop runs until Shutdown. While this node leads, it adds every
// alive Serf member missing from the Raft configuration (or present at a
// stale address) that passes verification (verify.go), and removes every
// server whose Serf member has left.
func (a *Agent) reconcileLoop() {
	ticker := time.NewTicker(a.cfg.ReconcileInterval)
	defer ticker.Stop()
	for {
		select {
		case <-a.stopping:
			return
		case <-ticker.C:
			a.reconcile()
		}
	}
}

func (a *Agent) reconcile() {
	servers, err := a.log.GetServers()
	if err != nil || !leads(servers, a.cfg.NodeName) {
		return
	}
	inRaft := make(map[string]*api.Server, len(servers))
	for _, s := range servers {
		inRaft[s.GetId()] = s
	}
	for _, m := range a.membership.Members() {
		if m.Name == a.cfg.NodeName {
			continue
		}
		addr := m.Tags[discovery.RPCAddrTag]
		known, ok := inRaft[m.Name]
		switch {
		case m.Status == serf.StatusAlive && addr != "" && (!ok || known.GetRpcAddr() != addr):
			if err := a.admit(m.Name, addr, servers, false); err != nil {
				a.logReconcileErr("join", m.Name, err)
			}
		case (m.Status == serf.StatusLeft) && ok:
			if err := a.log.Leave(m.Name); err != nil {
				a.logReconcileErr("leave", m.Name, err)
			}
		}
	}
}

func (a *Agent) logReconcileErr(op, name string, err error) {
	var notLeader api.ErrNotLeader
	if errors.As(err, &notLeader) {
		return // lost leadership mid-pass: the new leader reconciles
	}
	a.logger.Warn("reconcile membership", zap.String("op", op), zap.String("member", name), zap.Error(err))
}

func leads(servers []*api.Server, id string) bool {
	for _, s := range servers {
		if s.GetIsLeader() && s.GetId() == id {
			return true
		}
	}
	return false
}

// leaveRaft takes this node out of the Raft configuration before its Raft
// stops, while its vote can still help commit the change: a two-voter
// cluster whose leader simply stopped would be left with one voter that
// cannot commit the removal of the other, and so no leader. Serf's leave
// has already told the other nodes; if this node leads, it hands
// leadership over first, and the new leader's reconcile loop removes it.
// The last voter of a cluster stays in its configuration, so that it can
// start again alone. The wait is bounded by timeout (a cluster without a
// quorum cannot remove anyone).
//
// It polls the local configuration: Raft reports configuration changes to
// observers only on the leader, and this node is a follower by then.
func (a *Agent) leaveRaft(timeout time.Duration) {
	servers, err := a.log.GetServers()
	if err != nil || len(servers) < 2 || !contains(servers, a.cfg.NodeName) {
		return
	}
	a.log.HandOverLeadership()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		servers, err := a.log.GetServers()
		if err != nil || !contains(servers, a.cfg.NodeName) {
			return
		}
		select {
		case <-deadline.C:
			a.logger.Warn("still in the raft configuration at shutdown: no leader removed this node",
				zap.Duration("waited", timeout))
			return
		case <-tick.C:
		}
	}
}

func contains(servers []*api.Server, id string) bool {
	for _, s := range servers {
		if s.GetId() == id {
			return true
		}
	}
	return false
}
