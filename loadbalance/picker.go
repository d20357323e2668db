package loadbalance

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// route is where a method's calls go.
type route int

const (
	routeAny      route = iota // any ready server
	routeLeader                // the leader only
	routeFollower              // followers round-robin, else the leader
)

// routes maps exact full method names to routes. Every method of the Log
// service is listed (TestRoutesCoverTheLogService walks the service
// descriptor, so a new RPC cannot be forgotten); anything absent (health
// checks, reflection) is routeAny. Exact names, not substrings: a future
// "ConsumeStats" must not be taken for a read.
//
// Writes, the topic administration included, go to the leader, which alone
// can apply them (a follower answers NOT_LEADER). Reads go to followers:
// ListTopics and DescribeTopic answer from the node's applied state, so
// right after CreateTopic a follower may not list the new topic for a
// moment (Consume, by contrast, waits a little for a committed offset).
var routes = map[string]route{
	api.Log_Produce_FullMethodName:       routeLeader,
	api.Log_ProduceBatch_FullMethodName:  routeLeader,
	api.Log_ProduceStream_FullMethodName: routeLeader,
	api.Log_CreateTopic_FullMethodName:   routeLeader,
	api.Log_DeleteTopic_FullMethodName:   routeLeader,
	api.Log_AlterTopic_FullMethodName:    routeLeader,
	api.Log_Consume_FullMethodName:       routeFollower,
	api.Log_ConsumeStream_FullMethodName: routeFollower,
	api.Log_ListTopics_FullMethodName:    routeFollower,
	api.Log_DescribeTopic_FullMethodName: routeFollower,
	api.Log_GetServers_FullMethodName:    routeAny,
	// Consumer groups: a commit is a replicated write; offsets and groups
	// are read from a follower's applied state (a commit made a moment ago
	// may not be there yet: a consumer then resumes a little earlier, never
	// later).
	api.Log_CommitOffset_FullMethodName:  routeLeader,
	api.Log_FetchOffset_FullMethodName:   routeFollower,
	api.Log_ListGroups_FullMethodName:    routeFollower,
	api.Log_DescribeGroup_FullMethodName: routeFollower,
}

// leaderReadKey marks a context whose read must go to the leader (see
// withLeaderRead).
type leaderReadKey struct{}

// withLeaderRead returns ctx marked so that the picker sends a read made
// with it to the leader instead of a follower.
func withLeaderRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, leaderReadKey{}, true)
}

// picker is an immutable snapshot of the ready SubConns built by
// leaderBalancer.updatePicker; gRPC may call Pick from any goroutine.
type picker struct {
	leader    balancer.SubConn   // nil when the leader is not ready
	followers []balancer.SubConn // ready non-leaders, in address order
	ready     []balancer.SubConn // every ready SubConn, in address order
	noLeader  error              // returned for writes when leader is nil
	noneReady error              // returned for other calls when nothing fits
	next      *atomic.Uint32     // round-robin position, shared across pickers
}

var _ balancer.Picker = (*picker)(nil)

// Pick implements balancer.Picker.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	r := routes[info.FullMethodName]
	if r == routeFollower && info.Ctx != nil && info.Ctx.Value(leaderReadKey{}) != nil {
		r = routeLeader
	}
	switch r {
	case routeLeader:
		if p.leader == nil {
			return balancer.PickResult{}, p.noLeader
		}
		return balancer.PickResult{SubConn: p.leader}, nil
	case routeFollower:
		if len(p.followers) > 0 {
			return balancer.PickResult{SubConn: p.roundRobin(p.followers)}, nil
		}
		if p.leader != nil {
			return balancer.PickResult{SubConn: p.leader}, nil
		}
		return balancer.PickResult{}, p.noneReady
	default:
		if len(p.ready) > 0 {
			return balancer.PickResult{SubConn: p.roundRobin(p.ready)}, nil
		}
		return balancer.PickResult{}, p.noneReady
	}
}

func (p *picker) roundRobin(scs []balancer.SubConn) balancer.SubConn {
	n := p.next.Add(1)
	return scs[int(n%uint32(len(scs)))]
}

// unavailable builds the status error a pick fails with: a status error ends
// the RPC at once with its code, where a plain error would leave
// wait-for-ready RPCs waiting.
func unavailable(format string, args ...any) error {
	return status.Error(codes.Unavailable, "loadbalance: "+fmt.Sprintf(format, args...))
}

// sortedKeys returns m's keys in order, so pickers list servers in a stable
// order and the round-robin rotation survives a rebuild.
func sortedKeys[V any](m map[string]V) []string {
	return slices.SortedFunc(maps.Keys(m), cmp.Compare[string])
}
