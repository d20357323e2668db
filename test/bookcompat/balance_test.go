package bookcompat_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/proglog/proglog/test/bookcompat/bookv1"
)

// The resolver and picker a book reader writes (its chapter on client-side
// discovery): the resolver asks a server for GetServers and marks the leader
// in each address's attributes; the picker sends Produce calls to the leader
// and Consume calls round-robin to the followers. They speak only the book's
// wire format.

// bookScheme names both the resolver's scheme and the balancer.
const bookScheme = "bookcompat"

// isLeaderKey is the address attribute that marks the leader.
type isLeaderKey struct{}

// registerBookBalancer registers the picker's balancer with gRPC, whose
// balancer registry is global; TestMain calls it once.
func registerBookBalancer() {
	balancer.Register(base.NewBalancerBuilder(bookScheme, pickerBuilder{}, base.Config{}))
}

// bookResolverBuilder builds resolvers whose GetServers calls use creds.
type bookResolverBuilder struct {
	creds credentials.TransportCredentials
}

var _ resolver.Builder = bookResolverBuilder{}

// Scheme implements resolver.Builder.
func (bookResolverBuilder) Scheme() string { return bookScheme }

// Build implements resolver.Builder: target's endpoint is one server's RPC
// address.
func (b bookResolverBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	conn, err := grpc.NewClient(target.Endpoint(), grpc.WithTransportCredentials(b.creds))
	if err != nil {
		return nil, err
	}
	r := &bookResolver{
		cc:            cc,
		conn:          conn,
		serviceConfig: cc.ParseServiceConfig(`{"loadBalancingConfig":[{"` + bookScheme + `":{}}]}`),
	}
	r.ResolveNow(resolver.ResolveNowOptions{})
	return r, nil
}

// bookResolver lists the cluster's servers through GetServers.
type bookResolver struct {
	cc            resolver.ClientConn
	conn          *grpc.ClientConn
	serviceConfig *serviceconfig.ParseResult
	mu            sync.Mutex // serialises resolutions
}

// ResolveNow implements resolver.Resolver.
func (r *bookResolver) ResolveNow(resolver.ResolveNowOptions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	res, err := bookv1.NewLogClient(r.conn).GetServers(ctx, &bookv1.GetServersRequest{})
	if err != nil {
		r.cc.ReportError(err)
		return
	}
	var addrs []resolver.Address
	for _, s := range res.GetServers() {
		addrs = append(addrs, resolver.Address{
			Addr:       s.GetRpcAddr(),
			Attributes: attributes.New(isLeaderKey{}, s.GetIsLeader()),
		})
	}
	if err := r.cc.UpdateState(resolver.State{Addresses: addrs, ServiceConfig: r.serviceConfig}); err != nil {
		r.cc.ReportError(err)
	}
}

// Close implements resolver.Resolver.
func (r *bookResolver) Close() { _ = r.conn.Close() }

// pickerBuilder builds a picker from the ready connections.
type pickerBuilder struct{}

// Build implements base.PickerBuilder.
func (pickerBuilder) Build(info base.PickerBuildInfo) balancer.Picker {
	p := &picker{}
	for sc, scInfo := range info.ReadySCs {
		if leader, ok := scInfo.Address.Attributes.Value(isLeaderKey{}).(bool); ok && leader {
			p.leader = sc
		} else {
			p.followers = append(p.followers, sc)
		}
	}
	return p
}

// picker sends writes to the leader and reads round-robin to the followers.
type picker struct {
	leader    balancer.SubConn
	followers []balancer.SubConn
	next      atomic.Uint64
}

// Pick implements balancer.Picker.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	var sc balancer.SubConn
	switch {
	case strings.Contains(info.FullMethodName, "Produce"):
		sc = p.leader
	case strings.Contains(info.FullMethodName, "Consume") && len(p.followers) > 0:
		sc = p.followers[(p.next.Add(1)-1)%uint64(len(p.followers))]
	default:
		sc = p.leader
	}
	if sc == nil {
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	return balancer.PickResult{SubConn: sc}, nil
}
