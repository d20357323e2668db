package loadbalance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	api "github.com/proglog/proglog/api/v1"
)

// Scheme is the URI scheme the resolver answers: "proglog:///host:port" or
// "proglog:///h1:p1,h2:p2".
const Scheme = "proglog"

// Default values of ResolverConfig fields.
const (
	DefaultResolveInterval           = time.Second
	DefaultResolveTimeout            = 2 * time.Second
	DefaultLeaderlessResolveInterval = 250 * time.Millisecond
)

// ResolverConfig configures a Builder. The zero value is valid: every field
// has a default.
type ResolverConfig struct {
	// Credentials are the transport credentials the resolver dials servers
	// with to call GetServers. Nil (the default) means the ClientConn's own
	// (grpc.WithTransportCredentials or grpc.WithCredentialsBundle), so the
	// resolver speaks TLS exactly when the client does.
	Credentials credentials.TransportCredentials
	// ResolveInterval is how often the resolver asks GetServers again when
	// nothing else asks it to. A server that left the cluster and joined
	// again (a graceful stop and restart) takes calls from a running
	// client after at most this long. Default DefaultResolveInterval (1 s).
	ResolveInterval time.Duration
	// LeaderlessResolveInterval is how often the resolver asks again while
	// the servers that answer name no leader (an election is under way),
	// so that clients find the new leader soon after it is elected rather
	// than at their next retry. Default DefaultLeaderlessResolveInterval
	// (250 ms).
	LeaderlessResolveInterval time.Duration
	// ResolveTimeout bounds one GetServers call to one server, connecting
	// included, before the resolver tries the next address. Default
	// DefaultResolveTimeout (2 s).
	ResolveTimeout time.Duration
	// DialOptions are added to the resolver's own connections (after the
	// credentials), e.g. a custom dialer. Default none.
	DialOptions []grpc.DialOption
	// Logger receives the resolver's logs. Default zap.NewNop().
	Logger *zap.Logger
}

// withDefaults returns cfg with every zero field set to its default, the one
// place defaults are filled in.
func (cfg ResolverConfig) withDefaults() ResolverConfig {
	if cfg.ResolveInterval == 0 {
		cfg.ResolveInterval = DefaultResolveInterval
	}
	if cfg.ResolveTimeout == 0 {
		cfg.ResolveTimeout = DefaultResolveTimeout
	}
	if cfg.LeaderlessResolveInterval == 0 {
		cfg.LeaderlessResolveInterval = DefaultLeaderlessResolveInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg
}

func (cfg ResolverConfig) validate() error {
	if cfg.ResolveInterval < 0 {
		return fmt.Errorf("loadbalance: ResolveInterval %v is negative", cfg.ResolveInterval)
	}
	if cfg.ResolveTimeout < 0 {
		return fmt.Errorf("loadbalance: ResolveTimeout %v is negative", cfg.ResolveTimeout)
	}
	if cfg.LeaderlessResolveInterval < 0 {
		return fmt.Errorf("loadbalance: LeaderlessResolveInterval %v is negative", cfg.LeaderlessResolveInterval)
	}
	return nil
}

// Builder builds one resolver per gRPC ClientConn for the "proglog" scheme.
// Pass it to grpc.NewClient with grpc.WithResolvers; it is never registered
// globally. A Builder may serve several ClientConns; each gets its own
// resolver and its own goroutine, stopped when the ClientConn closes.
type Builder struct {
	cfg ResolverConfig

	mu sync.Mutex
	// live holds the resolvers built and not yet closed, so ResolveNow can
	// reach them. Guarded by mu.
	live map[*proglogResolver]struct{}
	// leaderWatchers are called, once each, the next time a resolver
	// reports a leader other than the one it reported before. Guarded by
	// mu.
	leaderWatchers map[*leaderWatcher]struct{}
	// answered is set once any resolver built by b got an answer to
	// GetServers: the cluster was reachable at least once.
	answered atomic.Bool
}

// leaderWatcher is one onLeaderChange registration; a pointer, so it can
// key a map.
type leaderWatcher struct{ fn func() }

var _ resolver.Builder = (*Builder)(nil)

// NewBuilder validates cfg and returns a Builder. It calls Register so that
// the service config its resolvers report always names a registered
// balancer.
func NewBuilder(cfg ResolverConfig) (*Builder, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	Register()
	return &Builder{
		cfg:            cfg,
		live:           make(map[*proglogResolver]struct{}),
		leaderWatchers: make(map[*leaderWatcher]struct{}),
	}, nil
}

// Scheme implements resolver.Builder.
func (b *Builder) Scheme() string { return Scheme }

// ResolveNow asks every live resolver built by b to call GetServers again
// now, e.g. after a write was refused with NOT_LEADER. It does not block.
func (b *Builder) ResolveNow() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for r := range b.live {
		r.ResolveNow(resolver.ResolveNowOptions{})
	}
}

// Build implements resolver.Builder. gRPC calls it once per ClientConn.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	seeds, err := ParseSeeds(target.Endpoint())
	if err != nil {
		return nil, fmt.Errorf("loadbalance: target %q: %w", target.String(), err)
	}
	dialOpts, err := b.dialOptions(opts)
	if err != nil {
		return nil, err
	}
	var sc *serviceconfig.ParseResult
	if !opts.DisableServiceConfig {
		sc = cc.ParseServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, Name))
		if sc.Err != nil {
			return nil, fmt.Errorf("loadbalance: parse service config: %w", sc.Err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &proglogResolver{
		cc:            cc,
		builder:       b,
		seeds:         seeds,
		dialOpts:      dialOpts,
		serviceConfig: sc,
		interval:      b.cfg.ResolveInterval,
		leaderless:    b.cfg.LeaderlessResolveInterval,
		timeout:       b.cfg.ResolveTimeout,
		logger:        b.cfg.Logger.Named("resolver").With(zap.Strings("seeds", seeds)),
		resolveNow:    make(chan struct{}, 1),
		unanswered:    make(map[string]bool),
		cancel:        cancel,
		done:          make(chan struct{}),
	}
	b.mu.Lock()
	b.live[r] = struct{}{}
	b.mu.Unlock()
	// The first resolution runs on the goroutine, not here: Build must not
	// block the ClientConn on network calls.
	go r.run(ctx)
	return r, nil
}

func (b *Builder) forget(r *proglogResolver) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.live, r)
}

// onLeaderChange arranges for fn to be called once, from a resolver's
// goroutine, the next time one of b's resolvers reports a leader that
// differs from the last leader it reported; a first leader, or "no leader",
// is not a change. By then gRPC already has the new picker, so a call made
// from fn's wake goes to the new leader. fn must not block. stop cancels the
// registration; it may be called after fn ran, and more than once.
//
// Client uses it to abandon a write in flight to a leader that the cluster
// has replaced (one that froze, say), instead of waiting out the attempt.
func (b *Builder) onLeaderChange(fn func()) (stop func()) {
	w := &leaderWatcher{fn: fn}
	b.mu.Lock()
	b.leaderWatchers[w] = struct{}{}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.leaderWatchers, w)
	}
}

// leaderChanged calls and drops every registered leader watcher.
func (b *Builder) leaderChanged() {
	b.mu.Lock()
	watchers := b.leaderWatchers
	b.leaderWatchers = make(map[*leaderWatcher]struct{})
	b.mu.Unlock()
	// Outside the lock: a watcher may call stop.
	for w := range watchers {
		w.fn()
	}
}

// dialOptions picks the credentials for the resolver's own connections: the
// builder's if set, else the ClientConn's.
func (b *Builder) dialOptions(opts resolver.BuildOptions) ([]grpc.DialOption, error) {
	var dialOpts []grpc.DialOption
	switch {
	case b.cfg.Credentials != nil:
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(b.cfg.Credentials))
	case opts.DialCreds != nil:
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(opts.DialCreds))
	case opts.CredsBundle != nil:
		dialOpts = append(dialOpts, grpc.WithCredentialsBundle(opts.CredsBundle))
	default:
		return nil, ErrNoCredentials
	}
	if opts.Dialer != nil {
		dialOpts = append(dialOpts, grpc.WithContextDialer(opts.Dialer))
	}
	return append(dialOpts, b.cfg.DialOptions...), nil
}

// ParseSeeds splits a target endpoint "h1:p1,h2:p2" into host:port seeds,
// ignoring blanks, and checks each one has a port.
func ParseSeeds(endpoint string) ([]string, error) {
	var seeds []string
	for _, s := range strings.Split(endpoint, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("loadbalance: seed %q: %w", s, err)
		}
		seeds = append(seeds, s)
	}
	if len(seeds) == 0 {
		return nil, ErrNoSeeds
	}
	return seeds, nil
}

// isLeaderKey is the key of the leadership attribute; an unexported type so
// no other package can collide with it.
type isLeaderKey struct{}

// withLeader returns attributes saying whether a server is the leader. They
// go in Address.BalancerAttributes, which gRPC leaves out of a SubConn's
// identity: a leader change updates the picker without reconnecting.
func withLeader(isLeader bool) *attributes.Attributes {
	return attributes.New(isLeaderKey{}, isLeader)
}

// isLeader reports the leadership attribute set by withLeader (false when
// absent).
func isLeader(a *attributes.Attributes) bool {
	if a == nil {
		return false
	}
	v, ok := a.Value(isLeaderKey{}).(bool)
	return ok && v
}

// IsLeader reports whether the resolver marked addr as the cluster's leader.
func IsLeader(addr resolver.Address) bool {
	return isLeader(addr.BalancerAttributes)
}

// proglogResolver is the resolver of one ClientConn. Its goroutine (run)
// owns conn, connAddr, known, unanswered and leader; ResolveNow and Close
// only signal it.
type proglogResolver struct {
	cc            resolver.ClientConn
	builder       *Builder
	seeds         []string
	dialOpts      []grpc.DialOption
	serviceConfig *serviceconfig.ParseResult // nil when service config is disabled
	interval      time.Duration
	leaderless    time.Duration // the interval while no leader is named
	timeout       time.Duration
	logger        *zap.Logger

	// resolveNow wakes run; buffered with one slot and sent to without
	// blocking, so a burst of requests coalesces into one resolution.
	resolveNow chan struct{}
	cancel     context.CancelFunc // stops run and any call in flight
	done       chan struct{}      // closed when run has returned
	closeOnce  sync.Once

	// Owned by run.
	conn     *grpc.ClientConn // connection to the server that answered last
	connAddr string
	known    []string // rpc addresses from the last good GetServers
	// unanswered holds the addresses whose last GetServers failed. They
	// are asked last: a paused server accepts connections and then never
	// answers, and asking it first would cost every resolution a whole
	// ResolveTimeout.
	unanswered map[string]bool
	leader     string // rpc address of the last leader reported; "" before the first
}

var _ resolver.Resolver = (*proglogResolver)(nil)

// ResolveNow implements resolver.Resolver: it wakes the resolver goroutine
// without blocking.
func (r *proglogResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.resolveNow <- struct{}{}:
	default:
	}
}

// Close implements resolver.Resolver: it stops the goroutine, cancelling any
// GetServers in flight, and waits for it. Safe to call more than once.
func (r *proglogResolver) Close() {
	r.closeOnce.Do(func() {
		r.builder.forget(r)
		r.cancel()
		<-r.done
	})
}

func (r *proglogResolver) run(ctx context.Context) {
	defer close(r.done)
	defer r.closeConn()
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	soon := time.NewTimer(r.leaderless)
	defer soon.Stop()
	for {
		leaderless := r.resolve(ctx)
		soon.Stop()
		var again <-chan time.Time
		if leaderless {
			soon.Reset(r.leaderless)
			again = soon.C
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-again:
		case <-r.resolveNow:
		}
	}
}

// resolve asks each candidate address in turn for GetServers and reports the
// first answer that names a leader to gRPC; when none does, the first
// answer; when none answers, an error. It reports whether the answer
// reported names no leader.
//
// An answer without a leader does not end the pass: the server asked may be
// the one cut off from the others (an old leader on the minority side of a
// partition, which clients still reach), while the majority has elected a
// leader it cannot see. Asking only it, clients found the new leader only
// when the partition healed.
func (r *proglogResolver) resolve(ctx context.Context) (leaderless bool) {
	var errs []error
	var noLeader []*api.Server
	for _, addr := range r.candidates() {
		servers, err := r.getServers(ctx, addr)
		if ctx.Err() != nil {
			return false
		}
		if err == nil && len(servers) == 0 {
			err = ErrNoServers
		}
		if err != nil {
			r.logger.Debug("GetServers failed", zap.String("addr", addr), zap.Error(err))
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			r.unanswered[addr] = true
			continue
		}
		delete(r.unanswered, addr)
		r.builder.answered.Store(true)
		if !slices.ContainsFunc(servers, (*api.Server).GetIsLeader) {
			if noLeader == nil {
				noLeader = servers
			}
			continue
		}
		r.report(servers)
		return false
	}
	if noLeader != nil {
		r.report(noLeader)
		return true
	}
	err := fmt.Errorf("loadbalance: no server answered GetServers: %w", errors.Join(errs...))
	r.logger.Warn("resolve failed", zap.Error(err))
	r.cc.ReportError(err)
	return false
}

// report sends servers to gRPC. It marks leadership in BalancerAttributes and
// remembers the addresses as fallbacks for when every seed is down.
func (r *proglogResolver) report(servers []*api.Server) {
	addrs := make([]resolver.Address, 0, len(servers))
	known := make([]string, 0, len(servers))
	leader := ""
	for _, s := range servers {
		rpcAddr := s.GetRpcAddr()
		host, _, err := net.SplitHostPort(rpcAddr)
		if err != nil {
			r.logger.Warn("skipping server with bad rpc_addr", zap.String("id", s.GetId()), zap.String("rpc_addr", rpcAddr))
			continue
		}
		addrs = append(addrs, resolver.Address{
			Addr: rpcAddr,
			// See the package doc, "TLS": without this, a multi-seed target
			// would make the whole seed list the TLS server name.
			ServerName:         host,
			BalancerAttributes: withLeader(s.GetIsLeader()),
		})
		known = append(known, rpcAddr)
		if s.GetIsLeader() && leader == "" {
			leader = rpcAddr
		}
	}
	if len(addrs) == 0 {
		r.cc.ReportError(fmt.Errorf("loadbalance: GetServers returned no usable address: %w", ErrNoServers))
		return
	}
	r.known = known
	for a := range r.unanswered {
		// Forget servers that left the cluster, so the set stays small.
		if !slices.Contains(known, a) && !slices.Contains(r.seeds, a) {
			delete(r.unanswered, a)
		}
	}
	err := r.cc.UpdateState(resolver.State{Addresses: addrs, ServiceConfig: r.serviceConfig})
	if err != nil {
		// The periodic re-resolution is the retry the ClientConn asks for.
		r.logger.Warn("ClientConn rejected resolver state", zap.Error(err))
	}
	// After UpdateState, which returns once the balancer has built its new
	// picker: a watcher that retries at once reaches the new leader.
	if leader != "" {
		changed := r.leader != "" && r.leader != leader
		r.leader = leader
		if changed {
			r.logger.Info("leader changed", zap.String("leader", leader))
			r.builder.leaderChanged()
		}
	}
}

// candidates lists the addresses to ask, without duplicates: the one that
// answered last (its connection is open), then the seeds, then every server
// learned before, so a dead seed list does not strand a running client.
// Addresses that did not answer last time come after all the others, in
// the same order.
func (r *proglogResolver) candidates() []string {
	seen := make(map[string]bool)
	var out, last []string
	add := func(addrs ...string) {
		for _, a := range addrs {
			if a == "" || seen[a] {
				continue
			}
			seen[a] = true
			if r.unanswered[a] {
				last = append(last, a)
			} else {
				out = append(out, a)
			}
		}
	}
	add(r.connAddr)
	add(r.seeds...)
	add(r.known...)
	return append(out, last...)
}

// getServers calls GetServers on addr, reusing the open connection when it
// leads there. A failed connection is closed so the next try dials afresh.
func (r *proglogResolver) getServers(ctx context.Context, addr string) ([]*api.Server, error) {
	if r.conn == nil || r.connAddr != addr {
		r.closeConn()
		// passthrough: the resolver's own connection goes to exactly this
		// address, not through another resolver.
		conn, err := grpc.NewClient("passthrough:///"+addr, r.dialOpts...)
		if err != nil {
			return nil, fmt.Errorf("dial: %w", err)
		}
		r.conn, r.connAddr = conn, addr
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := api.NewLogClient(r.conn).GetServers(ctx, &api.GetServersRequest{})
	if err != nil {
		r.closeConn()
		return nil, fmt.Errorf("GetServers: %w", err)
	}
	return resp.GetServers(), nil
}

func (r *proglogResolver) closeConn() {
	if r.conn == nil {
		return
	}
	if err := r.conn.Close(); err != nil {
		r.logger.Debug("close resolver connection", zap.String("addr", r.connAddr), zap.Error(err))
	}
	r.conn, r.connAddr = nil, ""
}
