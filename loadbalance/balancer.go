package loadbalance

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
)

// Name is the name the balancer is registered under, used in the service
// config `{"loadBalancingConfig":[{"proglog":{}}]}`.
const Name = "proglog"

// registerOnce guards Register. It is the package's one piece of global
// state, and it exists because gRPC's balancer registry is itself global:
// a load-balancing policy can only be chosen by a registered name, there is
// no per-ClientConn way to pass one. Registering once is idempotent and the
// builder it registers holds no state (every ClientConn builds its own
// balancer), so sharing it between connections is safe.
var registerOnce sync.Once

// Register registers the "proglog" balancer with gRPC. Call it once before
// creating gRPC clients (in main or TestMain): gRPC's registry is not safe
// to write while other goroutines read it. Later calls do nothing.
// NewBuilder calls it too, so a program that forgets still works.
func Register() {
	registerOnce.Do(func() {
		balancer.Register(balancerBuilder{})
	})
}

// balancerBuilder builds one leaderBalancer per ClientConn.
type balancerBuilder struct{}

var _ balancer.Builder = balancerBuilder{}

// Build implements balancer.Builder.
func (balancerBuilder) Build(cc balancer.ClientConn, _ balancer.BuildOptions) balancer.Balancer {
	return &leaderBalancer{
		cc:       cc,
		subConns: make(map[string]*subConn),
		next:     new(atomic.Uint32),
	}
}

// Name implements balancer.Builder.
func (balancerBuilder) Name() string { return Name }

// subConn is one server's connection and its last state as the balancer sees
// it.
type subConn struct {
	sc      balancer.SubConn
	addr    string
	state   connectivity.State
	lastErr error // the connection error of the last TRANSIENT_FAILURE
	// failedAt is when the SubConn last entered TRANSIENT_FAILURE; zero
	// while it is not in failure.
	failedAt time.Time
}

// leaderBalancer keeps one SubConn per server and builds pickers that know
// which one leads. It is written from scratch rather than on balancer/base
// because base keeps the address a SubConn was created with: the leadership
// attribute of a later resolution would never reach its picker.
//
// gRPC calls UpdateClientConnState, ResolverError, Close, ExitIdle and the
// SubConn state listeners from one goroutine at a time, so the fields need
// no lock; pickers get immutable snapshots.
type leaderBalancer struct {
	cc          balancer.ClientConn
	subConns    map[string]*subConn // by address
	leader      string              // address of the leader per the last resolution; "" if none
	resolverErr error               // last resolver error; nil after a good resolution
	// next is the round-robin position, shared by successive pickers so that
	// a re-resolution does not restart the rotation.
	next   *atomic.Uint32
	closed bool
	// clock replaces time.Now in tests; nil in production.
	clock func() time.Time
}

var _ balancer.Balancer = (*leaderBalancer)(nil)

// errNoAddresses is reported when a resolution lists no server.
var errNoAddresses = errors.New("loadbalance: resolver produced no addresses")

// UpdateClientConnState implements balancer.Balancer: it reconciles the
// SubConns with the resolved servers and records the leader.
func (b *leaderBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	if b.closed {
		return nil
	}
	b.resolverErr = nil
	type server struct {
		addr     resolver.Address
		isLeader bool
	}
	var servers []server
	// gRPC fills Endpoints from Addresses, moving BalancerAttributes into
	// Endpoint.Attributes; read either so a resolver may send both forms.
	for _, ep := range s.ResolverState.Endpoints {
		if len(ep.Addresses) == 0 {
			continue
		}
		a := ep.Addresses[0]
		servers = append(servers, server{addr: a, isLeader: isLeader(ep.Attributes) || isLeader(a.BalancerAttributes)})
	}
	if len(s.ResolverState.Endpoints) == 0 {
		for _, a := range s.ResolverState.Addresses {
			servers = append(servers, server{addr: a, isLeader: isLeader(a.BalancerAttributes)})
		}
	}
	if len(servers) == 0 {
		b.ResolverError(errNoAddresses)
		return balancer.ErrBadResolverState
	}

	want := make(map[string]bool, len(servers))
	b.leader = ""
	for _, srv := range servers {
		addr := srv.addr.Addr
		want[addr] = true
		if srv.isLeader && b.leader == "" {
			b.leader = addr
		}
		if old, ok := b.subConns[addr]; ok {
			if !srv.isLeader || !b.staleFailure(old) {
				continue
			}
			// The cluster names as its leader a server this connection
			// last failed to reach: it is back (a server learns it leads
			// only once it runs). gRPC would retry only when its
			// reconnect backoff ends; a fresh SubConn dials now.
			old.sc.Shutdown()
			delete(b.subConns, addr)
		}
		a := srv.addr
		a.BalancerAttributes = nil // leadership is the balancer's business, not the SubConn's
		entry := &subConn{addr: addr, state: connectivity.Idle}
		sc, err := b.cc.NewSubConn([]resolver.Address{a}, balancer.NewSubConnOptions{
			StateListener: func(st balancer.SubConnState) { b.updateSubConnState(entry, st) },
		})
		if err != nil {
			// Only fails once the ClientConn is closing; the next resolution
			// would try again.
			continue
		}
		entry.sc = sc
		b.subConns[addr] = entry
		sc.Connect()
	}
	for addr, entry := range b.subConns {
		if !want[addr] {
			entry.sc.Shutdown()
			delete(b.subConns, addr)
		}
	}
	b.updatePicker()
	return nil
}

// ResolverError implements balancer.Balancer. Existing SubConns keep serving;
// with none, RPCs fail with Unavailable naming the error.
func (b *leaderBalancer) ResolverError(err error) {
	if b.closed {
		return
	}
	b.resolverErr = err
	b.updatePicker()
}

// UpdateSubConnState implements balancer.Balancer. It is never called: every
// SubConn has a StateListener.
func (b *leaderBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

// Close implements balancer.Balancer: it shuts every SubConn down.
func (b *leaderBalancer) Close() {
	if b.closed {
		return
	}
	b.closed = true
	for addr, entry := range b.subConns {
		entry.sc.Shutdown()
		delete(b.subConns, addr)
	}
}

// ExitIdle implements balancer.Balancer: reconnect every idle SubConn.
func (b *leaderBalancer) ExitIdle() {
	if b.closed {
		return
	}
	for _, entry := range b.subConns {
		if entry.state == connectivity.Idle {
			entry.sc.Connect()
		}
	}
}

func (b *leaderBalancer) updateSubConnState(entry *subConn, st balancer.SubConnState) {
	if b.closed || b.subConns[entry.addr] != entry {
		return // removed or replaced; its Shutdown state is of no interest
	}
	newState := st.ConnectivityState
	switch newState {
	case connectivity.Shutdown:
		return
	case connectivity.Idle:
		// A SubConn reconnects only when asked.
		entry.sc.Connect()
	case connectivity.TransientFailure:
		entry.lastErr = st.ConnectionError
		if entry.failedAt.IsZero() {
			entry.failedAt = b.now()
		}
		// The server may have gone for good or lost leadership: ask the
		// resolver for a fresh list rather than wait for the interval.
		b.cc.ResolveNow(resolver.ResolveNowOptions{})
	}
	if entry.state == connectivity.TransientFailure && newState != connectivity.Ready {
		// Stay in TRANSIENT_FAILURE until the SubConn is READY again, so a
		// server that keeps refusing connections fails picks fast instead
		// of looking like it is forever "connecting".
		return
	}
	entry.state = newState
	if newState == connectivity.Ready {
		entry.failedAt = time.Time{}
	}
	b.updatePicker()
}

// leaderRedialInterval is the least time between two fresh SubConns for a
// server named leader while its connection is failing. The resolver may
// name a dead leader for a moment (a follower that has not noticed yet);
// redialling it on every resolution would spin.
const leaderRedialInterval = 100 * time.Millisecond

// staleFailure reports whether entry is in TRANSIENT_FAILURE since at least
// leaderRedialInterval, i.e. waiting out a reconnect backoff that may
// outlast the server's absence.
func (b *leaderBalancer) staleFailure(entry *subConn) bool {
	return entry.state == connectivity.TransientFailure && !entry.failedAt.IsZero() &&
		b.now().Sub(entry.failedAt) >= leaderRedialInterval
}

// now is time.Now, or the test's clock.
func (b *leaderBalancer) now() time.Time {
	if b.clock != nil {
		return b.clock()
	}
	return time.Now()
}

// updatePicker hands gRPC a new picker and the aggregate state built from
// the current snapshot.
func (b *leaderBalancer) updatePicker() {
	p := &picker{next: b.next}
	var connecting bool
	var connErr error
	for _, addr := range sortedKeys(b.subConns) {
		entry := b.subConns[addr]
		switch entry.state {
		case connectivity.Ready:
			p.ready = append(p.ready, entry.sc)
			if addr == b.leader {
				p.leader = entry.sc
			} else {
				p.followers = append(p.followers, entry.sc)
			}
		case connectivity.Idle, connectivity.Connecting:
			connecting = true
		case connectivity.TransientFailure:
			connErr = entry.lastErr
		}
	}

	// Why nothing is ready: wait while a connection is still being made,
	// fail with Unavailable when every one has failed.
	cause := b.cause(connErr)
	if connecting {
		p.noneReady = balancer.ErrNoSubConnAvailable
	} else {
		p.noneReady = unavailable("no server is reachable: %v", cause)
	}

	leader, known := b.subConns[b.leader]
	switch {
	case p.leader != nil:
	case b.leader == "" || !known:
		p.noLeader = unavailable("no leader known: %v", b.resolverErrOr("the cluster reports no leader"))
	case leader.state == connectivity.TransientFailure:
		p.noLeader = unavailable("leader %s unreachable: %v", b.leader, leader.lastErr)
	default:
		p.noLeader = balancer.ErrNoSubConnAvailable
	}

	state := connectivity.TransientFailure
	switch {
	case len(p.ready) > 0:
		state = connectivity.Ready
	case connecting:
		state = connectivity.Connecting
	}
	b.cc.UpdateState(balancer.State{ConnectivityState: state, Picker: p})
}

// cause describes the last failure for an error message.
func (b *leaderBalancer) cause(connErr error) error {
	switch {
	case connErr != nil && b.resolverErr != nil:
		return fmt.Errorf("last connection error: %w; last resolver error: %w", connErr, b.resolverErr)
	case connErr != nil:
		return connErr
	case b.resolverErr != nil:
		return b.resolverErr
	default:
		return errors.New("no servers")
	}
}

func (b *leaderBalancer) resolverErrOr(msg string) string {
	if b.resolverErr != nil {
		return b.resolverErr.Error()
	}
	return msg
}
