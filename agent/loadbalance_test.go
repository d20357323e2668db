package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/proglog/proglog/agent"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/test/testnet"
)

// Client-side load balancing against a real cluster: the loadbalance
// resolver, picker and Client dialled through proglog:///… with TLS and the
// root certificate, routing counted on the servers, and leader and follower
// loss while a client writes or streams.

// balancedUserAgent tags the calls of the balanced client under test, so the
// servers' counters leave out the resolver's own GetServers calls (made on
// separate connections with gRPC's default user agent).
const balancedUserAgent = "proglog-balanced-test"

// rpcCounter counts, on one server, the calls the balanced client made, by
// full method name.
type rpcCounter struct {
	mu     sync.Mutex
	counts map[string]int // guarded by mu
}

func (r *rpcCounter) count(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, ua := range md.Get("user-agent") {
		if strings.HasPrefix(ua, balancedUserAgent) {
			r.mu.Lock()
			r.counts[method]++
			r.mu.Unlock()
			return
		}
	}
}

func (r *rpcCounter) get(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[method]
}

// serverOptions are interceptors that count every call reaching the server.
func (r *rpcCounter) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			r.count(ctx, info.FullMethod)
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			r.count(ss.Context(), info.FullMethod)
			return handler(srv, ss)
		}),
	}
}

// rpcCounters holds one rpcCounter per node, by node name.
type rpcCounters map[string]*rpcCounter

// configure installs a counter on the node being configured; pass it to
// newTestCluster.
func (rc rpcCounters) configure(cfg *agent.Config) {
	counter := &rpcCounter{counts: make(map[string]int)}
	rc[cfg.NodeName] = counter
	cfg.GRPCServerOptions = append(cfg.GRPCServerOptions, counter.serverOptions()...)
}

// perNode returns how many calls of method each node of c received, by node
// index.
func (rc rpcCounters) perNode(c *testCluster, method string) []int {
	out := make([]int, len(c.nodes))
	for i, node := range c.nodes {
		out[i] = rc[node.cfg.NodeName].get(method)
	}
	return out
}

// rpcAddr is node i's RPC address, whether or not it is running.
func (c *testCluster) rpcAddr(i int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.nodes[i].cfg.RPCPort))
}

func (c *testCluster) rpcAddrs() []string {
	addrs := make([]string, len(c.nodes))
	for i := range c.nodes {
		addrs[i] = c.rpcAddr(i)
	}
	return addrs
}

// balancedClient returns a loadbalance.Client seeded with every node's RPC
// address (proglog:///a1,a2,a3), authenticated as root, tagged with
// balancedUserAgent. It is closed when the test ends.
func (c *testCluster) balancedClient(cfg loadbalance.Config) *loadbalance.Client {
	c.t.Helper()
	cfg.Seeds = c.rpcAddrs()
	cfg.TLSConfig = c.rootTLS()
	cfg.Logger = zaptest.NewLogger(c.t).Named("client")
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithUserAgent(balancedUserAgent))
	client, err := loadbalance.New(cfg)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = client.Close() })
	return client
}

// waitAllReady waits until the client's picker has all n servers ready: it
// calls GetServers, which goes round-robin over ready servers, until every
// running node has answered one. Without it, the first reads may go to the
// leader only because the followers' connections are still being made.
func waitAllReady(t *testing.T, c *testCluster, client *loadbalance.Client, counters rpcCounters) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := client.GetServers(ctx); err != nil {
			return false
		}
		for i, n := range counters.perNode(c, api.Log_GetServers_FullMethodName) {
			if c.nodes[i].agent != nil && n == 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "the balanced client never reached every server")
}

// resolverCC records what a resolver reports. The embedded interface is nil:
// a call to any other method panics and fails the test.
type resolverCC struct {
	resolver.ClientConn

	mu     sync.Mutex
	states []resolver.State // guarded by mu
}

func (r *resolverCC) UpdateState(s resolver.State) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, s)
	return nil
}

func (r *resolverCC) ReportError(error) {}

func (r *resolverCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

func (r *resolverCC) last() (resolver.State, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.states) == 0 {
		return resolver.State{}, false
	}
	return r.states[len(r.states)-1], true
}

// TestLoadBalanceRouting checks the resolver's view of a real cluster and
// where the picker sends each method, counted on the servers.
func TestLoadBalanceRouting(t *testing.T) {
	loadbalance.Register()
	counters := rpcCounters{}
	c := newTestCluster(t, 3, func(cfg *agent.Config) {
		counters.configure(cfg)
		// The counts below hold only while one node leads: the suite's
		// 300 ms timeouts let a loaded machine elect another mid-test.
		cfg.RaftHeartbeatTimeout = time.Second
		cfg.RaftElectionTimeout = time.Second
		cfg.RaftLeaderLeaseTimeout = 500 * time.Millisecond
	})
	leader := c.waitForLeader()
	leaderAddr := c.nodes[leader].agent.RPCAddr()

	t.Run("resolver lists every server with one leader", func(t *testing.T) {
		dead := net.JoinHostPort("127.0.0.1", strconv.Itoa(testnet.KernelFreePorts(t, 1)[0]))
		tests := []struct {
			name  string
			seeds []string
		}{
			{name: "seed list", seeds: c.rpcAddrs()},
			{name: "one seed, a follower", seeds: []string{c.rpcAddr((leader + 1) % 3)}},
			{name: "first seed down", seeds: []string{dead, c.rpcAddr((leader + 2) % 3)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b, err := loadbalance.NewBuilder(loadbalance.ResolverConfig{Logger: zaptest.NewLogger(t)})
				require.NoError(t, err)
				cc := &resolverCC{}
				target := resolver.Target{URL: url.URL{Scheme: loadbalance.Scheme, Path: "/" + strings.Join(tt.seeds, ",")}}
				r, err := b.Build(target, cc, resolver.BuildOptions{DialCreds: credentials.NewTLS(c.rootTLS())})
				require.NoError(t, err)
				defer r.Close()

				var state resolver.State
				require.Eventually(t, func() bool {
					var ok bool
					state, ok = cc.last()
					return ok
				}, 10*time.Second, 10*time.Millisecond, "resolver never reported servers")
				var addrs, leaders []string
				for _, a := range state.Addresses {
					addrs = append(addrs, a.Addr)
					if loadbalance.IsLeader(a) {
						leaders = append(leaders, a.Addr)
					}
					require.Equal(t, "127.0.0.1", a.ServerName, "ServerName of %s", a.Addr)
				}
				require.ElementsMatch(t, c.rpcAddrs(), addrs, "resolved addresses")
				require.Equal(t, []string{leaderAddr}, leaders, "addresses marked leader")
			})
		}
	})

	client := c.balancedClient(loadbalance.Config{})
	waitAllReady(t, c, client, counters)

	t.Run("GetServers through proglog:/// lists three with one leader", func(t *testing.T) {
		servers, err := client.GetServers(context.Background())
		require.NoError(t, err)
		require.Equal(t, []string{"node-0", "node-1", "node-2"}, sortedIDs(servers))
		var leaders []string
		for _, s := range servers {
			if s.GetIsLeader() {
				leaders = append(leaders, s.GetRpcAddr())
			}
		}
		require.Equal(t, []string{leaderAddr}, leaders)
	})

	const n = 20 // calls per method; even, so two followers get n/2 each
	followerShare := make([]int, 3)
	leaderOnly := make([]int, 3)
	for i := range followerShare {
		if i != leader {
			followerShare[i] = n / 2
		}
	}
	leaderOnly[leader] = n
	ctx := context.Background()
	tests := []struct {
		name   string
		method string
		call   func(t *testing.T, i int)
		want   []int // calls per node index
	}{
		{
			name:   "Produce goes to the leader",
			method: api.Log_Produce_FullMethodName,
			call: func(t *testing.T, i int) {
				_, err := client.Produce(ctx, []byte(fmt.Sprintf("routed-%02d", i)))
				require.NoError(t, err)
			},
			want: leaderOnly,
		},
		{
			name:   "ProduceBatch goes to the leader",
			method: api.Log_ProduceBatch_FullMethodName,
			call: func(t *testing.T, i int) {
				_, err := client.ProduceBatch(ctx, [][]byte{[]byte("batch-a"), []byte("batch-b")})
				require.NoError(t, err)
			},
			want: leaderOnly,
		},
		{
			name:   "ProduceStream goes to the leader",
			method: api.Log_ProduceStream_FullMethodName,
			call: func(t *testing.T, i int) {
				ctx, cancel := context.WithCancel(ctx)
				defer cancel() // releases the client side of the stream
				stream, err := client.LogClient().ProduceStream(ctx)
				require.NoError(t, err)
				require.NoError(t, stream.Send(&api.ProduceRequest{Record: &api.Record{Value: []byte("streamed")}}))
				_, err = stream.Recv()
				require.NoError(t, err)
				require.NoError(t, stream.CloseSend())
			},
			want: leaderOnly,
		},
		{
			name:   "Consume spreads over the followers",
			method: api.Log_Consume_FullMethodName,
			call: func(t *testing.T, i int) {
				record, err := client.Consume(ctx, uint64(i))
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("routed-%02d", i), string(record.GetValue()), "Consume(%d)", i)
			},
			want: followerShare,
		},
		{
			name:   "CreateTopic goes to the leader",
			method: api.Log_CreateTopic_FullMethodName,
			call: func(t *testing.T, i int) {
				_, err := client.CreateTopic(ctx, fmt.Sprintf("routed-%02d", i), nil)
				require.NoError(t, err)
				if i == n-1 {
					// Reads of the topics below go to followers: wait
					// until every node has applied the last creation.
					for node := range c.nodes {
						require.Eventually(t, func() bool {
							_, err := c.nodes[node].agent.Log().Topic(fmt.Sprintf("routed-%02d", i))
							return err == nil
						}, 10*time.Second, 10*time.Millisecond, "node %d never applied the topic", node)
					}
				}
			},
			want: leaderOnly,
		},
		{
			name:   "Produce to a topic goes to the leader",
			method: api.Log_Produce_FullMethodName,
			call: func(t *testing.T, i int) {
				off, err := client.Produce(ctx, []byte("in a topic"), loadbalance.WithTopic("routed-00"))
				require.NoError(t, err)
				require.Equal(t, uint64(i), off, "offset in topic routed-00")
			},
			want: leaderOnly,
		},
		{
			name:   "Consume of a topic spreads over the followers",
			method: api.Log_Consume_FullMethodName,
			call: func(t *testing.T, i int) {
				record, err := client.Consume(ctx, uint64(i), loadbalance.WithTopic("routed-00"))
				require.NoError(t, err)
				require.Equal(t, "in a topic", string(record.GetValue()))
			},
			want: followerShare,
		},
		{
			name:   "ListTopics spreads over the followers",
			method: api.Log_ListTopics_FullMethodName,
			call: func(t *testing.T, i int) {
				topics, err := client.ListTopics(ctx)
				require.NoError(t, err)
				require.Len(t, topics, n+1, "the default topic and the routed ones")
			},
			want: followerShare,
		},
		{
			name:   "DescribeTopic spreads over the followers",
			method: api.Log_DescribeTopic_FullMethodName,
			call: func(t *testing.T, i int) {
				info, err := client.DescribeTopic(ctx, fmt.Sprintf("routed-%02d", i))
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("routed-%02d", i), info.GetName())
			},
			want: followerShare,
		},
		{
			name:   "CommitOffset goes to the leader",
			method: api.Log_CommitOffset_FullMethodName,
			call: func(t *testing.T, i int) {
				off, err := client.CommitOffset(ctx, fmt.Sprintf("group-%02d", i), 1, false, loadbalance.WithTopic("routed-00"))
				require.NoError(t, err)
				require.Equal(t, uint64(1), off)
				if i == n-1 {
					for node := range c.nodes {
						require.Eventually(t, func() bool {
							_, err := c.nodes[node].agent.Log().FetchOffset(fmt.Sprintf("group-%02d", i), "routed-00")
							return err == nil
						}, 10*time.Second, 10*time.Millisecond, "node %d never applied the commit", node)
					}
				}
			},
			want: leaderOnly,
		},
		{
			name:   "FetchOffset spreads over the followers",
			method: api.Log_FetchOffset_FullMethodName,
			call: func(t *testing.T, i int) {
				off, err := client.FetchOffset(ctx, fmt.Sprintf("group-%02d", i), loadbalance.WithTopic("routed-00"))
				require.NoError(t, err)
				require.Equal(t, uint64(1), off)
			},
			want: followerShare,
		},
		{
			name:   "ListGroups spreads over the followers",
			method: api.Log_ListGroups_FullMethodName,
			call: func(t *testing.T, i int) {
				groups, err := client.ListGroups(ctx)
				require.NoError(t, err)
				require.Len(t, groups, n)
			},
			want: followerShare,
		},
		{
			name:   "DescribeGroup spreads over the followers",
			method: api.Log_DescribeGroup_FullMethodName,
			call: func(t *testing.T, i int) {
				g, err := client.DescribeGroup(ctx, fmt.Sprintf("group-%02d", i))
				require.NoError(t, err)
				require.Equal(t, uint64(n), g.GetTopics()[0].GetNextOffset())
				require.Equal(t, uint64(n-1), g.GetTopics()[0].GetLag())
			},
			want: followerShare,
		},
		{
			name:   "AlterTopic goes to the leader",
			method: api.Log_AlterTopic_FullMethodName,
			call: func(t *testing.T, i int) {
				info, err := client.AlterTopic(ctx, fmt.Sprintf("routed-%02d", i), &api.TopicConfig{RetentionBytes: 1 << 30})
				require.NoError(t, err)
				require.Equal(t, uint64(1<<30), info.GetConfig().GetRetentionBytes())
			},
			want: leaderOnly,
		},
		{
			name:   "DeleteTopic goes to the leader",
			method: api.Log_DeleteTopic_FullMethodName,
			call: func(t *testing.T, i int) {
				require.NoError(t, client.DeleteTopic(ctx, fmt.Sprintf("routed-%02d", i)))
			},
			want: leaderOnly,
		},
		{
			name:   "ConsumeStream spreads over the followers",
			method: api.Log_ConsumeStream_FullMethodName,
			call: func(t *testing.T, i int) {
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				stream, err := client.LogClient().ConsumeStream(ctx, &api.ConsumeRequest{Offset: uint64(i)})
				require.NoError(t, err)
				res, err := stream.Recv()
				require.NoError(t, err)
				require.Equal(t, uint64(i), res.GetRecord().GetOffset(), "ConsumeStream(%d) first offset", i)
			},
			want: followerShare,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counters.perNode(c, tt.method)
			for i := range n {
				tt.call(t, i)
			}
			after := counters.perNode(c, tt.method)
			if now := c.waitForLeader(); now != leader {
				// Every call succeeded (checked above), but the counts
				// are another leader's: nothing to compare them with.
				t.Skipf("leadership moved from node %d to node %d during the calls (a loaded machine); per-node counts not comparable", leader, now)
			}
			got := make([]int, len(after))
			for i := range after {
				got[i] = after[i] - before[i]
			}
			require.Equal(t, tt.want, got, "%s calls per node (leader is node %d)", tt.method, leader)
		})
	}

	t.Run("ConsumeStream opens before any record", func(t *testing.T) {
		// The server's headers come at once, so the client can tell an
		// open stream waiting for records from one that never opened.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		stream, err := client.LogClient().ConsumeStream(ctx, &api.ConsumeRequest{Offset: 1 << 40})
		require.NoError(t, err)
		header, err := stream.Header()
		require.NoError(t, err)
		require.NotNil(t, header, "ConsumeStream past the end: no headers before the deadline")
		require.NoError(t, ctx.Err(), "ConsumeStream past the end: headers only at the deadline")
	})

	t.Run("GetServers goes to any server", func(t *testing.T) {
		before := counters.perNode(c, api.Log_GetServers_FullMethodName)
		for range 3 * n {
			_, err := client.GetServers(ctx)
			require.NoError(t, err)
		}
		after := counters.perNode(c, api.Log_GetServers_FullMethodName)
		for i := range after {
			require.Equal(t, n, after[i]-before[i], "GetServers calls on node %d", i)
		}
	})
}

// killModes are the ways a node is taken down in the failover tests.
var killModes = []struct {
	name string
	kill func(c *testCluster, i int)
}{
	// Shutdown: Serf leave, streams ended with Unavailable, in-flight calls
	// finished, Raft stopped (no leadership transfer).
	{name: "shutdown", kill: (*testCluster).stop},
	// Crash: RPC port closed, connections cut, Raft stopped, Serf not told.
	{name: "crash", kill: (*testCluster).crash},
}

// ack is one write the client acknowledged.
type ack struct {
	value  string
	offset uint64
	at     time.Time
}

// writer produces "w-00000", "w-00001", … one at a time through the
// balanced client until stopped, and records every acknowledged write and
// every error.
type writer struct {
	mu   sync.Mutex
	acks []ack   // guarded by mu
	errs []error // guarded by mu
	sent int     // values handed to Produce; guarded by mu

	cancel context.CancelFunc
	done   chan struct{}
}

func startWriter(client *loadbalance.Client) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ctx.Err() == nil; i++ {
			value := fmt.Sprintf("w-%05d", i)
			w.mu.Lock()
			w.sent = i + 1
			w.mu.Unlock()
			off, err := client.Produce(ctx, []byte(value))
			w.mu.Lock()
			switch {
			case err == nil:
				w.acks = append(w.acks, ack{value: value, offset: off, at: time.Now()})
			case ctx.Err() == nil:
				w.errs = append(w.errs, fmt.Errorf("Produce(%s): %w", value, err))
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// acksSince counts the writes acknowledged after t.
func (w *writer) acksSince(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.acks {
		if a.at.After(t) {
			n++
		}
	}
	return n
}

// stop ends the writer and returns what it saw; the write in flight, if
// any, is abandoned (it may or may not be in the log).
func (w *writer) stop(t *testing.T) ([]ack, []error, int) {
	t.Helper()
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		t.Fatal("writer did not stop")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acks, w.errs, w.sent
}

// TestLoadBalanceWritesSurviveLeaderLoss kills the leader's agent while a
// client writes in a loop through proglog:///…: writes resume against the
// new leader on their own, and every acknowledged write is in the log of
// each surviving node, at the offset it was acknowledged with.
func TestLoadBalanceWritesSurviveLeaderLoss(t *testing.T) {
	loadbalance.Register()
	for _, mode := range killModes {
		t.Run(mode.name, func(t *testing.T) {
			c := newTestCluster(t, 3, nil)
			client := c.balancedClient(loadbalance.Config{})
			start := time.Now()
			w := startWriter(client)
			require.Eventually(t, func() bool { return w.acksSince(start) >= 20 }, 10*time.Second, 5*time.Millisecond,
				"no writes before the kill")

			old := c.waitForLeader()
			killedAt := time.Now()
			mode.kill(c, old)
			killed := time.Now()
			newLeader := c.waitForLeader()
			elected := time.Now()
			require.NotEqual(t, old, newLeader, "leader after killing node %d", old)
			// Writes resume: 20 more acknowledged after the kill completed.
			require.Eventually(t, func() bool { return w.acksSince(killed) >= 20 }, 15*time.Second, 5*time.Millisecond,
				"writes did not resume after the leader was killed")
			acks, errs, sent := w.stop(t)
			require.Empty(t, errs, "errors returned to the writer")

			// The longest stall: the widest gap between consecutive
			// acknowledgements, counting from the kill's start.
			var stall time.Duration
			prev := acks[0].at
			for _, a := range acks[1:] {
				if a.at.After(killedAt) && prev.Before(killedAt) {
					prev = killedAt
				}
				stall = max(stall, a.at.Sub(prev))
				prev = a.at
			}
			var resumed time.Time
			for _, a := range acks {
				if a.at.After(killed) {
					resumed = a.at
					break
				}
			}
			t.Logf("%s: %d writes acknowledged (%d sent); kill took %v, new leader seen %v later, "+
				"first write acknowledged after the kill %v after that; longest stall %v (election timeout %v)",
				mode.name, len(acks), sent, killed.Sub(killedAt), elected.Sub(killed), resumed.Sub(elected),
				stall, c.nodes[newLeader].cfg.RaftElectionTimeout)
			require.Less(t, stall, 10*c.nodes[newLeader].cfg.RaftElectionTimeout+killed.Sub(killedAt),
				"writes stalled for %v", stall)

			// Every acknowledged write is in every survivor's log at its
			// offset, and none twice.
			var survivors []int
			for i, node := range c.nodes {
				if node.agent != nil {
					survivors = append(survivors, i)
				}
			}
			var end uint64
			require.Eventually(t, func() bool {
				end = c.nodes[newLeader].agent.Log().Stats().NextOffset
				for _, i := range survivors {
					if c.nodes[i].agent.Log().Stats().NextOffset != end {
						return false
					}
				}
				return true
			}, 10*time.Second, 10*time.Millisecond, "survivors never agreed on the log's end")
			for _, i := range survivors {
				log := c.readAll(i, end)
				for _, a := range acks {
					require.Less(t, a.offset, end, "node %d: acknowledged %s at offset %d past the end", i, a.value, a.offset)
					require.Equal(t, a.value, log[a.offset], "node %d: Read(%d)", i, a.offset)
				}
				seen := make(map[string]int, len(log))
				duplicates := 0
				for off, v := range log {
					var k int
					_, err := fmt.Sscanf(v, "w-%05d", &k)
					require.NoError(t, err, "node %d: offset %d holds %q, which the writer never sent", i, off, v)
					require.Less(t, k, sent, "node %d: offset %d holds %q, which the writer never sent", i, off, v)
					seen[v]++
					if seen[v] > 1 {
						duplicates++
					}
				}
				t.Logf("node %d: %d records, %d duplicates from retried writes", i, len(log), duplicates)
				// The client is an idempotent producer: a write whose
				// outcome was unknown (the leader died or lost its lease
				// after replicating it) is retried with the same sequence
				// and not appended again.
				require.Zero(t, duplicates, "node %d: values appended twice", i)
			}
		})
	}
}

// TestLoadBalanceConsumeStreamResumes streams from a follower with the
// client's ConsumeStream, takes that follower down mid-stream while records
// keep coming, and checks the stream carries on from another node: every
// offset once, in order, with its value.
func TestLoadBalanceConsumeStreamResumes(t *testing.T) {
	loadbalance.Register()
	for _, mode := range killModes {
		t.Run(mode.name, func(t *testing.T) {
			counters := rpcCounters{}
			c := newTestCluster(t, 3, counters.configure)
			leader := c.waitForLeader()
			client := c.balancedClient(loadbalance.Config{})
			waitAllReady(t, c, client, counters)

			var want []string
			produce := func(prefix string, n int) {
				t.Helper()
				for _, v := range values(prefix, n) {
					off, err := client.Produce(context.Background(), []byte(v))
					require.NoError(t, err)
					require.Equal(t, uint64(len(want)), off, "Produce(%s)", v)
					want = append(want, v)
				}
			}
			produce("before", 20)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			records := make(chan *api.Record, 1024)
			streamErr := make(chan error, 1)
			go func() {
				streamErr <- client.ConsumeStream(ctx, 0, func(r *api.Record) error {
					records <- r
					return nil
				})
			}()
			var got []*api.Record
			receive := func(upTo int) {
				t.Helper()
				deadline := time.After(20 * time.Second)
				for len(got) < upTo {
					select {
					case r := <-records:
						got = append(got, r)
					case err := <-streamErr:
						t.Fatalf("ConsumeStream ended after %d records: %v", len(got), err)
					case <-deadline:
						t.Fatalf("ConsumeStream: %d records, want %d", len(got), upTo)
					}
				}
			}
			receive(20)

			streams := counters.perNode(c, api.Log_ConsumeStream_FullMethodName)
			serving := -1
			for i, n := range streams {
				if n == 1 {
					serving = i
				}
			}
			require.Equal(t, 1, sum(streams), "ConsumeStream calls per node %v", streams)
			require.NotEqual(t, leader, serving, "the stream went to the leader, not a follower")

			produce("during", 10)
			receive(30)
			mode.kill(c, serving)
			produce("after", 20)
			receive(50)

			require.Len(t, got, 50)
			for i, r := range got {
				require.Equal(t, uint64(i), r.GetOffset(), "record %d: offset", i)
				require.Equal(t, want[i], string(r.GetValue()), "record %d: value", i)
			}
			select {
			case r := <-records:
				t.Fatalf("extra record at offset %d", r.GetOffset())
			default:
			}
			streams = counters.perNode(c, api.Log_ConsumeStream_FullMethodName)
			require.Greater(t, sum(streams)-streams[serving], 0,
				"the stream never resumed on another node: ConsumeStream calls per node %v", streams)
			t.Logf("%s: ConsumeStream calls per node %v (node %d served first, node %d leads)", mode.name, streams, serving, leader)

			cancel()
			select {
			case err := <-streamErr:
				require.True(t, errors.Is(err, context.Canceled), "ConsumeStream after cancel = %v, want context.Canceled", err)
			case <-time.After(10 * time.Second):
				t.Fatal("ConsumeStream did not return after cancel")
			}
		})
	}
}

func sum(xs []int) int {
	total := 0
	for _, x := range xs {
		total += x
	}
	return total
}
