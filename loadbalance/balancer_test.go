package loadbalance

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// fakeBalancerCC stands in for gRPC around a leaderBalancer. The embedded
// interface is nil: any call the test does not expect panics.
type fakeBalancerCC struct {
	balancer.ClientConn

	subConns    map[string]*fakeSubConn // by address, every one ever created
	created     int
	state       balancer.State
	resolveNows int
}

func newFakeBalancerCC() *fakeBalancerCC {
	return &fakeBalancerCC{subConns: make(map[string]*fakeSubConn)}
}

func (f *fakeBalancerCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	if len(addrs) != 1 {
		return nil, errors.New("want exactly one address per SubConn")
	}
	sc := &fakeSubConn{addr: addrs[0], listener: opts.StateListener}
	f.subConns[addrs[0].Addr] = sc
	f.created++
	return sc, nil
}

func (f *fakeBalancerCC) UpdateState(s balancer.State)          { f.state = s }
func (f *fakeBalancerCC) ResolveNow(resolver.ResolveNowOptions) { f.resolveNows++ }

type fakeSubConn struct {
	balancer.SubConn

	addr     resolver.Address
	listener func(balancer.SubConnState)
	connects int
	shutdown bool
}

func (sc *fakeSubConn) Connect()  { sc.connects++ }
func (sc *fakeSubConn) Shutdown() { sc.shutdown = true }

func (sc *fakeSubConn) set(s connectivity.State) {
	var err error
	if s == connectivity.TransientFailure {
		err = errors.New("connection refused")
	}
	sc.listener(balancer.SubConnState{ConnectivityState: s, ConnectionError: err})
}

// resolved builds the state the resolver would report: addrs, the one at
// leader (or none when -1) marked leader.
func resolved(leader int, addrs ...string) balancer.ClientConnState {
	var s resolver.State
	for i, a := range addrs {
		s.Addresses = append(s.Addresses, resolver.Address{Addr: a, BalancerAttributes: withLeader(i == leader)})
	}
	// What gRPC does before handing the state to a balancer.
	for _, a := range s.Addresses {
		ep := resolver.Endpoint{Addresses: []resolver.Address{a}, Attributes: a.BalancerAttributes}
		ep.Addresses[0].BalancerAttributes = nil
		s.Endpoints = append(s.Endpoints, ep)
	}
	return balancer.ClientConnState{ResolverState: s}
}

// pick picks for method and returns the address picked or the error.
func pick(t *testing.T, cc *fakeBalancerCC, method string) (string, error) {
	t.Helper()
	require.NotNil(t, cc.state.Picker, "no picker")
	res, err := cc.state.Picker.Pick(balancer.PickInfo{FullMethodName: method})
	if err != nil {
		return "", err
	}
	sc, ok := res.SubConn.(*fakeSubConn)
	require.True(t, ok, "picked %T, want *fakeSubConn", res.SubConn)
	return sc.addr.Addr, nil
}

func newTestBalancer(t *testing.T) (*leaderBalancer, *fakeBalancerCC) {
	t.Helper()
	cc := newFakeBalancerCC()
	b, ok := balancerBuilder{}.Build(cc, balancer.BuildOptions{}).(*leaderBalancer)
	require.True(t, ok)
	t.Cleanup(b.Close)
	return b, cc
}

func TestPickerRoutesByExactMethod(t *testing.T) {
	b, cc := newTestBalancer(t)
	require.NoError(t, b.UpdateClientConnState(resolved(0, "l:1", "f:2", "g:3")))
	for _, sc := range cc.subConns {
		sc.set(connectivity.Ready)
	}
	tests := []struct {
		method string
		want   []string // the acceptable picks
	}{
		{method: api.Log_Produce_FullMethodName, want: []string{"l:1"}},
		{method: api.Log_ProduceBatch_FullMethodName, want: []string{"l:1"}},
		{method: api.Log_ProduceStream_FullMethodName, want: []string{"l:1"}},
		{method: api.Log_Consume_FullMethodName, want: []string{"f:2", "g:3"}},
		{method: api.Log_ConsumeStream_FullMethodName, want: []string{"f:2", "g:3"}},
		{method: api.Log_CreateTopic_FullMethodName, want: []string{"l:1"}},
		{method: api.Log_DeleteTopic_FullMethodName, want: []string{"l:1"}},
		{method: api.Log_ListTopics_FullMethodName, want: []string{"f:2", "g:3"}},
		{method: api.Log_DescribeTopic_FullMethodName, want: []string{"f:2", "g:3"}},
		{method: api.Log_GetServers_FullMethodName, want: []string{"l:1", "f:2", "g:3"}},
		{method: "/grpc.health.v1.Health/Check", want: []string{"l:1", "f:2", "g:3"}},
		// Substring look-alikes are not writes or reads.
		{method: "/log.v1.Log/ProduceStats", want: []string{"l:1", "f:2", "g:3"}},
		{method: "/other.v1.Log/Consume", want: []string{"l:1", "f:2", "g:3"}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			seen := make(map[string]int)
			for range 30 {
				got, err := pick(t, cc, tt.method)
				require.NoError(t, err)
				seen[got]++
			}
			for addr := range seen {
				require.Contains(t, tt.want, addr, "Pick(%s) = %s, want one of %v", tt.method, addr, tt.want)
			}
			require.Len(t, seen, len(tt.want), "Pick(%s) spread = %v, want all of %v", tt.method, seen, tt.want)
		})
	}
}

// TestRoutesCoverTheLogService walks the Log service's descriptor: every
// RPC must have an explicit route, so a new write RPC cannot silently reach
// a follower (which refuses it) because nobody added it to routes.
func TestRoutesCoverTheLogService(t *testing.T) {
	var methods []string
	for _, m := range api.Log_ServiceDesc.Methods {
		methods = append(methods, "/"+api.Log_ServiceDesc.ServiceName+"/"+m.MethodName)
	}
	for _, s := range api.Log_ServiceDesc.Streams {
		methods = append(methods, "/"+api.Log_ServiceDesc.ServiceName+"/"+s.StreamName)
	}
	require.NotEmpty(t, methods)
	for _, method := range methods {
		_, ok := routes[method]
		require.Truef(t, ok, "RPC %s has no entry in routes: decide whether it goes to the leader, to followers or anywhere", method)
	}
	require.Len(t, routes, len(methods), "routes names methods the Log service does not have")
}

func TestPickerReadsFallBackToLeader(t *testing.T) {
	b, cc := newTestBalancer(t)
	require.NoError(t, b.UpdateClientConnState(resolved(0, "l:1", "f:2")))
	cc.subConns["l:1"].set(connectivity.Ready)
	cc.subConns["f:2"].set(connectivity.Connecting)
	got, err := pick(t, cc, api.Log_Consume_FullMethodName)
	require.NoError(t, err)
	require.Equal(t, "l:1", got, "Pick(Consume) with no follower ready")
}

func TestPickerWithoutReadyLeader(t *testing.T) {
	tests := []struct {
		name        string
		leader      int
		leaderState connectivity.State
		wantErr     error      // exact error, or nil to check the code
		wantCode    codes.Code // when wantErr is nil
	}{
		{name: "leader connecting waits", leader: 0, leaderState: connectivity.Connecting, wantErr: balancer.ErrNoSubConnAvailable},
		{name: "leader unreachable fails", leader: 0, leaderState: connectivity.TransientFailure, wantCode: codes.Unavailable},
		{name: "no leader fails", leader: -1, leaderState: connectivity.Ready, wantCode: codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, cc := newTestBalancer(t)
			require.NoError(t, b.UpdateClientConnState(resolved(tt.leader, "l:1", "f:2")))
			cc.subConns["f:2"].set(connectivity.Ready)
			cc.subConns["l:1"].set(tt.leaderState)
			_, err := pick(t, cc, api.Log_Produce_FullMethodName)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr, "Pick(Produce)")
			} else {
				require.Equal(t, tt.wantCode, status.Code(err), "Pick(Produce) = %v", err)
			}
			// Reads still work on the ready servers.
			want := []string{"f:2"}
			if tt.leaderState == connectivity.Ready {
				want = append(want, "l:1")
			}
			got, err := pick(t, cc, api.Log_Consume_FullMethodName)
			require.NoError(t, err)
			require.Contains(t, want, got, "Pick(Consume)")
		})
	}
}

func TestBalancerLeaderChangeKeepsSubConns(t *testing.T) {
	b, cc := newTestBalancer(t)
	require.NoError(t, b.UpdateClientConnState(resolved(0, "a:1", "b:2", "c:3")))
	for _, sc := range cc.subConns {
		sc.set(connectivity.Ready)
	}
	got, err := pick(t, cc, api.Log_Produce_FullMethodName)
	require.NoError(t, err)
	require.Equal(t, "a:1", got)

	require.NoError(t, b.UpdateClientConnState(resolved(2, "a:1", "b:2", "c:3")))
	got, err = pick(t, cc, api.Log_Produce_FullMethodName)
	require.NoError(t, err)
	require.Equal(t, "c:3", got, "Pick(Produce) after leader change")
	require.Equal(t, 3, cc.created, "SubConns created")
	for addr, sc := range cc.subConns {
		require.False(t, sc.shutdown, "SubConn %s shut down", addr)
	}
}

func TestBalancerRemovesGoneServers(t *testing.T) {
	b, cc := newTestBalancer(t)
	require.NoError(t, b.UpdateClientConnState(resolved(0, "a:1", "b:2")))
	require.NoError(t, b.UpdateClientConnState(resolved(0, "a:1")))
	require.True(t, cc.subConns["b:2"].shutdown, "SubConn of a removed server shut down")
	require.False(t, cc.subConns["a:1"].shutdown)

	err := b.UpdateClientConnState(resolved(-1))
	require.ErrorIs(t, err, balancer.ErrBadResolverState, "UpdateClientConnState(no addresses)")
}

func TestBalancerStateAndTransientFailure(t *testing.T) {
	b, cc := newTestBalancer(t)
	require.NoError(t, b.UpdateClientConnState(resolved(0, "a:1")))
	require.Equal(t, connectivity.Connecting, cc.state.ConnectivityState)
	sc := cc.subConns["a:1"]

	sc.set(connectivity.TransientFailure)
	require.Equal(t, connectivity.TransientFailure, cc.state.ConnectivityState)
	require.Equal(t, 1, cc.resolveNows, "ResolveNow calls after a connection failure")
	_, err := pick(t, cc, api.Log_GetServers_FullMethodName)
	require.Equal(t, codes.Unavailable, status.Code(err), "Pick with every server down = %v", err)

	// Back to IDLE after the backoff: the balancer reconnects but keeps
	// failing picks fast rather than making them wait.
	connects := sc.connects
	sc.set(connectivity.Idle)
	require.Equal(t, connects+1, sc.connects, "Connect calls after IDLE")
	sc.set(connectivity.Connecting)
	_, err = pick(t, cc, api.Log_Produce_FullMethodName)
	require.Equal(t, codes.Unavailable, status.Code(err), "Pick(Produce) while reconnecting after a failure = %v", err)

	sc.set(connectivity.Ready)
	require.Equal(t, connectivity.Ready, cc.state.ConnectivityState)
	got, err := pick(t, cc, api.Log_Produce_FullMethodName)
	require.NoError(t, err)
	require.Equal(t, "a:1", got)
}

func TestBalancerResolverErrorWithoutServers(t *testing.T) {
	b, cc := newTestBalancer(t)
	b.ResolverError(errors.New("no server answered GetServers"))
	require.Equal(t, connectivity.TransientFailure, cc.state.ConnectivityState)
	_, err := pick(t, cc, api.Log_Consume_FullMethodName)
	require.Equal(t, codes.Unavailable, status.Code(err), "Pick = %v", err)
	require.Contains(t, err.Error(), "no server answered GetServers")
}
