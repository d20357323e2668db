package distlog

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// peerSummaryInterval is how often a peer that stays unreachable gets a
// line with the count of failed attempts so far.
const peerSummaryInterval = 30 * time.Second

// Raft's messages about one failed attempt to reach a peer. While a peer is
// down, a leader logs the heartbeat one about every 650 ms, at error level;
// peerFailures turns them into one warning when the peer goes, a count
// every peerSummaryInterval, and one line when it returns.
const (
	msgHeartbeatFailed     = "failed to heartbeat to"
	msgAppendEntriesFailed = "failed to appendEntries to"
	msgPipelineStartFailed = "failed to start pipeline replication to"
	msgPipelineFailed      = "failed to pipeline appendEntries"
)

// peerFailures tracks the peers this node's Raft failed to reach. It is
// shared by every logger derived from one bridge (With, Named).
type peerFailures struct {
	now func() time.Time

	mu   sync.Mutex
	down map[string]*peerDown // by peer address. Guarded by mu.
}

// peerDown is one unreachable peer.
type peerDown struct {
	since       time.Time
	lastSummary time.Time
	failures    int // failed attempts since it went, heartbeats and appends
	logger      *zap.Logger
}

func newPeerFailures() *peerFailures {
	return &peerFailures{now: time.Now, down: make(map[string]*peerDown)}
}

// peerAddress returns the address in a peer-failure message's "peer"
// argument (a raft.ServerAddress for heartbeats, a raft.Server for
// appends), or "" when msg is not one of them.
func peerAddress(msg string, args []any) string {
	switch msg {
	case msgHeartbeatFailed, msgAppendEntriesFailed, msgPipelineStartFailed, msgPipelineFailed:
	default:
		return ""
	}
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); !ok || k != "peer" {
			continue
		}
		switch p := args[i+1].(type) {
		case raft.ServerAddress:
			return string(p)
		case raft.Server:
			return string(p.Address)
		case *raft.Server:
			if p != nil {
				return string(p.Address)
			}
		case string:
			return p
		default:
			return fmt.Sprint(p)
		}
	}
	return ""
}

// failed records a failed attempt to reach the peer at addr and reports
// whether the caller should still log msg as Raft gave it: false when this
// call logged the warning that the peer went, or when the peer was already
// known to be down (the message then goes to debug level). A failed
// append to a peer whose heartbeats work is logged as it is.
func (p *peerFailures) failed(logger *zap.Logger, msg, addr string, fields []zap.Field) (logAsIs bool) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	d, known := p.down[addr]
	if !known {
		if msg != msgHeartbeatFailed {
			return true
		}
		p.down[addr] = &peerDown{since: now, lastSummary: now, failures: 1, logger: logger}
		warn := []zap.Field{zap.String("peer", addr), zap.String("first_failure", msg)}
		for _, f := range fields {
			if f.Key != "peer" { // Raft's own, as a typed value: said above as a string
				warn = append(warn, f)
			}
		}
		logger.Warn("raft peer unreachable; further failures are counted at debug level until it returns", warn...)
		return false
	}
	d.failures++
	if ce := logger.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(append(fields, zap.Int("failures", d.failures))...)
	}
	if now.Sub(d.lastSummary) >= peerSummaryInterval {
		d.lastSummary = now
		logger.Info("raft peer still unreachable",
			zap.String("peer", addr), zap.Int("failures", d.failures), zap.Duration("down_for", now.Sub(d.since).Round(time.Millisecond)))
	}
	return false
}

// returned records that the peer at addr answered again, logging it once
// with how long it was away and how many attempts failed.
func (p *peerFailures) returned(addr string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.down[addr]
	if !ok {
		return
	}
	delete(p.down, addr)
	d.logger.Info("raft peer reachable again",
		zap.String("peer", addr), zap.Int("failures", d.failures), zap.Duration("down_for", now.Sub(d.since).Round(time.Millisecond)))
}

// peerReturnObserver returns a Raft observer that tells failures when a
// peer's heartbeats succeed again. It does its work in the filter, on
// Raft's goroutine (a map lookup and at most one log line), and never
// queues an observation, so it needs no goroutine of its own.
func peerReturnObserver(failures *peerFailures) *raft.Observer {
	return raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		resumed, ok := o.Data.(raft.ResumedHeartbeatObservation)
		if !ok || o.Raft == nil {
			return false
		}
		future := o.Raft.GetConfiguration() // answered at once, from memory
		if future.Error() != nil {
			return false
		}
		for _, s := range future.Configuration().Servers {
			if s.ID == resumed.PeerID {
				failures.returned(string(s.Address))
			}
		}
		return false
	})
}
