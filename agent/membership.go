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

// Join adds the member as a voter when this node leads.
func (h membershipHandler) Join(name, addr string) error {
	if !h.a.isLeader() {
		return nil
	}
	return h.a.log.Join(name, addr)
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
// stale address) and removes every server whose Serf member has left.
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
			if err := a.log.Join(m.Name, addr); err != nil {
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
