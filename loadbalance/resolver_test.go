package loadbalance

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	api "github.com/proglog/proglog/api/v1"
)

// fakeResolverCC records what a resolver reports. The embedded interface is
// nil: a call to any other method panics, which fails the test.
type fakeResolverCC struct {
	resolver.ClientConn

	mu            sync.Mutex
	states        []resolver.State
	errs          []error
	serviceConfig string
}

func (f *fakeResolverCC) UpdateState(s resolver.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, s)
	return nil
}

func (f *fakeResolverCC) ReportError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *fakeResolverCC) ParseServiceConfig(js string) *serviceconfig.ParseResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serviceConfig = js
	return &serviceconfig.ParseResult{}
}

func (f *fakeResolverCC) stateCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.states)
}

func (f *fakeResolverCC) lastState() (resolver.State, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.states) == 0 {
		return resolver.State{}, false
	}
	return f.states[len(f.states)-1], true
}

func (f *fakeResolverCC) errorCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.errs)
}

func target(seeds ...string) resolver.Target {
	return resolver.Target{URL: url.URL{Scheme: Scheme, Path: "/" + strings.Join(seeds, ",")}}
}

// buildResolver builds a resolver for seeds with insecure credentials, as
// gRPC would, and closes it at the end of the test.
func buildResolver(t *testing.T, cfg ResolverConfig, seeds ...string) (*Builder, *fakeResolverCC) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	b, err := NewBuilder(cfg)
	require.NoError(t, err)
	cc := &fakeResolverCC{}
	r, err := b.Build(target(seeds...), cc, resolver.BuildOptions{DialCreds: insecure.NewCredentials()})
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return b, cc
}

// leaders returns the addresses marked leader in s.
func leaders(s resolver.State) []string {
	var out []string
	for _, a := range s.Addresses {
		if IsLeader(a) {
			out = append(out, a.Addr)
		}
	}
	return out
}

func addrsOf(s resolver.State) []string {
	var out []string
	for _, a := range s.Addresses {
		out = append(out, a.Addr)
	}
	return out
}

func TestResolverListsEveryServerWithOneLeader(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	dead := deadAddr(t)
	tests := []struct {
		name  string
		seeds []string
	}{
		{name: "one seed, a follower", seeds: []string{cluster.addrs()[2]}},
		{name: "seed list", seeds: cluster.addrs()},
		{name: "first seed down", seeds: []string{dead, cluster.addrs()[1]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cc := buildResolver(t, ResolverConfig{}, tt.seeds...)
			require.Eventually(t, func() bool { return cc.stateCount() > 0 }, 5*time.Second, 10*time.Millisecond)
			state, _ := cc.lastState()
			require.ElementsMatch(t, cluster.addrs(), addrsOf(state), "resolved addresses")
			require.Equal(t, []string{cluster.addrs()[0]}, leaders(state), "leaders")
			require.NotNil(t, state.ServiceConfig, "state carries the balancer's service config")
			for _, a := range state.Addresses {
				require.Equal(t, "127.0.0.1", a.ServerName, "ServerName of %s", a.Addr)
				require.Nil(t, a.Attributes, "SubConn attributes of %s: leadership must not be part of SubConn identity", a.Addr)
			}
			cc.mu.Lock()
			require.Contains(t, cc.serviceConfig, `"proglog"`)
			cc.mu.Unlock()
		})
	}
}

func TestResolverFollowsLeaderChangeOnResolveNow(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	// An hour: only ResolveNow can trigger the second resolution.
	b, cc := buildResolver(t, ResolverConfig{ResolveInterval: time.Hour}, cluster.addrs()[0])
	require.Eventually(t, func() bool { return cc.stateCount() == 1 }, 5*time.Second, 10*time.Millisecond)

	cluster.setLeader(2)
	b.ResolveNow()
	require.Eventually(t, func() bool { return cc.stateCount() == 2 }, 5*time.Second, 10*time.Millisecond)
	state, _ := cc.lastState()
	require.Equal(t, []string{cluster.addrs()[2]}, leaders(state), "leaders after change")
}

func TestResolverResolvesPeriodically(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	_, cc := buildResolver(t, ResolverConfig{ResolveInterval: 20 * time.Millisecond}, cluster.addrs()[0])
	require.Eventually(t, func() bool { return cc.stateCount() >= 3 }, 5*time.Second, 10*time.Millisecond,
		"resolutions without ResolveNow")
}

func TestResolverFallsBackToLearnedServers(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	// The only seed is server 0; once it is gone the resolver must ask the
	// servers it learned from it.
	b, cc := buildResolver(t, ResolverConfig{ResolveInterval: time.Hour}, cluster.addrs()[0])
	require.Eventually(t, func() bool { return cc.stateCount() == 1 }, 5*time.Second, 10*time.Millisecond)

	cluster.servers[0].stop()
	cluster.setLeader(1)
	b.ResolveNow()
	require.Eventually(t, func() bool { return cc.stateCount() == 2 }, 5*time.Second, 10*time.Millisecond)
	state, _ := cc.lastState()
	require.Equal(t, []string{cluster.addrs()[1]}, leaders(state), "leaders after seed died")
	asked := cluster.callCounts(api.Log_GetServers_FullMethodName)
	require.Positive(t, asked[1]+asked[2], "GetServers calls on servers 1 and 2 = %v, want some", asked)
}

func TestResolverReportsErrorWhenNoServerAnswers(t *testing.T) {
	_, cc := buildResolver(t, ResolverConfig{ResolveTimeout: time.Second}, deadAddr(t), deadAddr(t))
	require.Eventually(t, func() bool { return cc.errorCount() > 0 }, 5*time.Second, 10*time.Millisecond)
	require.Zero(t, cc.stateCount(), "states reported with no server up")
}

// TestResolverAsksOnWhenAServerKnowsNoLeader: a server that names no leader
// (the old leader, cut off from the majority that elected another) does not
// end a resolution: the others are asked too, and the leader one of them
// names is reported at once.
func TestResolverAsksOnWhenAServerKnowsNoLeader(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	cluster.setLeader(1)
	cluster.isolate(0)
	_, cc := buildResolver(t, ResolverConfig{ResolveInterval: time.Hour, LeaderlessResolveInterval: time.Hour}, cluster.addrs()...)
	require.Eventually(t, func() bool { return cc.stateCount() >= 1 }, 5*time.Second, 5*time.Millisecond, "no resolution")
	s, _ := cc.lastState()
	require.Equal(t, []string{cluster.server(1).addr}, leaders(s), "the first resolution, server 0 asked first")
}

func TestResolverBuildErrors(t *testing.T) {
	b, err := NewBuilder(ResolverConfig{Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	tests := []struct {
		name   string
		target resolver.Target
		opts   resolver.BuildOptions
		want   error
	}{
		{name: "no seeds", target: target(), opts: resolver.BuildOptions{DialCreds: insecure.NewCredentials()}, want: ErrNoSeeds},
		{name: "no credentials", target: target("127.0.0.1:1"), want: ErrNoCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := b.Build(tt.target, &fakeResolverCC{}, tt.opts)
			require.ErrorIs(t, err, tt.want)
			require.Nil(t, r)
		})
	}
}

func TestParseSeeds(t *testing.T) {
	tests := []struct {
		endpoint string
		want     []string
		wantErr  bool
	}{
		{endpoint: "127.0.0.1:8400", want: []string{"127.0.0.1:8400"}},
		{endpoint: "a:1,b:2, c:3 ,", want: []string{"a:1", "b:2", "c:3"}},
		{endpoint: "[::1]:8400", want: []string{"[::1]:8400"}},
		{endpoint: "", wantErr: true},
		{endpoint: "host-without-port", wantErr: true},
		{endpoint: "a:1,nohost", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint, func(t *testing.T) {
			got, err := ParseSeeds(tt.endpoint)
			if tt.wantErr {
				require.Error(t, err, "ParseSeeds(%q) = %v, want an error", tt.endpoint, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got, "ParseSeeds(%q)", tt.endpoint)
		})
	}
}

func TestNewBuilderRejectsNegativeDurations(t *testing.T) {
	for _, cfg := range []ResolverConfig{{ResolveInterval: -1}, {ResolveTimeout: -1}} {
		_, err := NewBuilder(cfg)
		require.Error(t, err, "NewBuilder(%+v)", cfg)
	}
}
