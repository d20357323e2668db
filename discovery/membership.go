package discovery

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"go.uber.org/zap"
)

// Handler is told when other members join and leave. Its methods are called
// one at a time, in the order Serf reported the events, from one goroutine
// that the Membership owns; never for the local member. An error is logged
// and otherwise ignored: the next event is handled all the same. A call may
// take its time (Serf keeps gossiping meanwhile), but Close waits for the one
// in progress.
type Handler interface {
	// Join is called when member name joins, comes back after a failure, or
	// changes its tags. addr is the member's RPCAddrTag. It may be called again
	// for a member already known, possibly with a new addr, so it must be
	// idempotent.
	Join(name, addr string) error

	// Leave is called when member name leaves gracefully, is declared failed
	// by the failure detector, or is reaped (forgotten for good after a leave
	// or a failure). It may therefore be called twice for one departure and
	// must be idempotent.
	Leave(name string) error
}

// memberState is where a Membership is in its life.
type memberState int

const (
	stateAlive  memberState = iota // gossiping
	stateLeft                      // left gracefully, Serf still running
	stateClosed                    // Serf shut down, goroutines stopped
)

// Membership is this node's Serf membership: it gossips with the other
// members and reports their joins and departures to a Handler. Its methods
// are safe for concurrent use.
type Membership struct {
	cfg    Config
	logger *zap.Logger
	serf   *serf.Serf
	loop   *eventLoop
	// logGate is closed last in Close: Serf's stragglers log nothing after.
	logGate *logGate

	// retryDone waits for the rejoin goroutine, when New started one.
	retryDone sync.WaitGroup

	// mu guards state and retryStop. It is held across Serf's Leave and
	// Shutdown so that Leave and Close never run into each other.
	mu    sync.Mutex
	state memberState
	// retryStop, when not nil, stops the rejoin goroutine.
	retryStop chan struct{}

	// serfKeyring is memberlist's keyring (nil without encryption), which
	// Serf does not hand out; keyring.go changes it.
	serfKeyring *memberlist.Keyring
}

// New starts Serf on cfg.BindAddr with cfg.Tags, joins the cluster through
// cfg.StartJoinAddrs (when given), and calls handler for the other members'
// events until Close. It fails with ErrInvalidConfig for a bad config or a nil
// handler, and with ErrJoin when no start-join address answers and the
// snapshot names nobody to rejoin; it leaves nothing running when it fails.
//
// With a snapshot (cfg.SnapshotPath) that names other members, New rejoins
// them in the background, without waiting: it contacts each of them once,
// and if neither they nor cfg.StartJoinAddrs answer, it still succeeds, logs
// a warning, and tries all of them again every cfg.RetryJoinInterval until
// one answers. A member restarted while the rest of its cluster is down thus
// waits for it instead of failing.
func New(handler Handler, cfg Config) (*Membership, error) {
	if handler == nil {
		return nil, fmt.Errorf("%w: handler is nil", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.Named("discovery").With(zap.String("node", cfg.NodeName))
	if err := ensureSnapshotDir(cfg.SnapshotPath); err != nil {
		return nil, err
	}
	// Read before Serf opens the file, which it then appends to.
	previous, err := snapshotMembers(cfg.SnapshotPath, cfg.RejoinAfterLeave, cfg.NodeName)
	if err != nil {
		return nil, err
	}

	// The event loop runs before Serf starts: Serf reports the local member's
	// join from Create on.
	keyring, err := newKeyring(cfg.GossipKeys)
	if err != nil {
		return nil, err
	}
	loop := startEventLoop(handler, cfg.NodeName, logger)
	gate := &logGate{}
	s, err := serf.Create(cfg.serfConfig(loop.events, logger, gate, keyring))
	if err != nil {
		loop.close()
		gate.close()
		return nil, fmt.Errorf("discovery: start serf on %s: %w", cfg.BindAddr, err)
	}
	m := &Membership{cfg: cfg, logger: logger, serf: s, loop: loop, logGate: gate, serfKeyring: keyring}

	rejoin := len(previous) > 0
	if len(cfg.StartJoinAddrs) > 0 {
		if err := m.join(cfg.StartJoinAddrs); err != nil {
			if len(previous) == 0 && !cfg.Rejoin {
				// Nobody has heard of this member, so there is nobody to
				// tell it leaves: shut down without a Leave.
				shutdownErr := s.Shutdown()
				loop.close()
				gate.close()
				return nil, errors.Join(err, shutdownErr)
			}
			// This member was part of a cluster: its members may be
			// restarting too. Failing would leave a cluster restarted in
			// the wrong order with no member up.
			logger.Warn("no start-join address answered; rejoining the members of the snapshot and the start-join addresses",
				zap.Error(err), zap.Strings("snapshot_members", previous))
			rejoin = true
		}
	}
	if rejoin {
		// The start-join addresses too, unless they answered: they may come
		// back before any member of the snapshot does.
		targets := previous
		if !m.seesOthers() {
			targets = rejoinTargets(cfg.StartJoinAddrs, previous)
		}
		m.retryStop = make(chan struct{})
		m.retryDone.Add(1)
		go m.rejoin(targets, cfg.RetryJoinInterval, m.retryStop)
	}
	logger.Info("membership started",
		zap.String("serf_addr", m.Addr()), zap.String("rpc_addr", cfg.Tags[RPCAddrTag]),
		zap.Strings("start_join_addrs", cfg.StartJoinAddrs), zap.Strings("snapshot_members", previous),
		zap.String("profile", string(cfg.Profile)), zap.Bool("gossip_encrypted", keyring != nil))
	return m, nil
}

// join asks Serf to join through addrs; one answer is enough.
func (m *Membership) join(addrs []string) error {
	n, err := m.serf.Join(addrs, true)
	if n == 0 {
		return newJoinError(addrs, err)
	}
	if err != nil {
		// Joined, but announcing the join failed; gossip will spread it anyway.
		m.logger.Warn("joined, but the join broadcast failed", zap.Int("contacted", n), zap.Error(err))
	}
	m.logger.Debug("joined cluster", zap.Int("contacted", n))
	return nil
}

// Addr returns the host:port other members reach this one at, for their
// StartJoinAddrs: the advertised Serf address, with the port the kernel
// picked when Config.BindAddr asked for port 0.
func (m *Membership) Addr() string {
	local := m.serf.LocalMember()
	return net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
}

// Members returns a snapshot of every member Serf knows, this one included,
// with Status telling alive, leaving, left and failed members apart (left and
// failed ones stay until reaped). The caller owns the slice.
func (m *Membership) Members() []serf.Member {
	return m.serf.Members()
}

// Leave leaves the cluster gracefully: the other members are told, so they
// report a leave rather than a failure, and Serf stops gossiping. It blocks
// until the leave has spread (bounded by the profile's broadcast timeout and
// leave-propagation delay). A member still trying to rejoin its cluster
// (Config.RetryJoinInterval) stops trying. Leaving twice is a no-op; Leave
// after Close returns ErrClosed. Close still has to be called.
func (m *Membership) Leave() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case stateClosed:
		return ErrClosed
	case stateLeft:
		return nil
	}
	// A member that leaves stops trying to rejoin.
	m.stopRetryLocked()
	if err := m.serf.Leave(); err != nil {
		return fmt.Errorf("discovery: leave: %w", err)
	}
	m.state = stateLeft
	m.logger.Info("left cluster")
	return nil
}

// Close leaves the cluster if Leave has not been called (Serf wants a leave
// before a shutdown, or the others see a failure), shuts Serf down, and stops
// the event goroutines, waiting for a handler call in progress to return (and
// for a rejoin attempt in progress: at most the profile's TCP timeout).
// Events not yet handled are dropped, and nothing is logged once it returns
// (a few of memberlist's goroutines outlive Shutdown by up to a probe
// timeout; their last lines are dropped). It keeps going past errors and
// returns them joined. Calling it again returns nil.
func (m *Membership) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == stateClosed {
		return nil
	}
	m.stopRetryLocked()
	var errs []error
	if m.state != stateLeft {
		if err := m.serf.Leave(); err != nil {
			errs = append(errs, fmt.Errorf("discovery: leave: %w", err))
		}
	}
	if err := m.serf.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("discovery: shut down serf: %w", err))
	}
	// After Shutdown: Serf sends no more events, so the pump can stop.
	m.loop.close()
	m.state = stateClosed
	m.logger.Info("membership closed")
	m.logGate.close()
	return errors.Join(errs...)
}
