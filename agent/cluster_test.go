package agent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/proglog/proglog/agent"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/discovery"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
)

// testNode is one agent of a test cluster plus what is needed to restart it
// on the same ports and data directory.
type testNode struct {
	cfg   agent.Config
	agent *agent.Agent
}

// testCluster is n agents on 127.0.0.1 with TLS and ACLs on, as a user runs
// them, but with short Raft and gossip timings.
type testCluster struct {
	t     *testing.T
	files tlsconfig.FileSet
	nodes []*testNode
	// gossipKey encrypts the cluster's gossip.
	gossipKey []byte
}

// newTestCluster starts n agents: node 0 bootstraps, the others join it
// through Serf. configure, if not nil, adjusts each node's Config.
func newTestCluster(t *testing.T, n int, configure func(*agent.Config)) *testCluster {
	t.Helper()
	files := tlsconfigtest.Files(t)
	c := &testCluster{t: t, files: files, gossipKey: newGossipKey(t)}
	serverTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile, Server: true,
	})
	require.NoError(t, err)
	peerTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile,
		Peer: true, ServerAddress: "127.0.0.1",
	})
	require.NoError(t, err)

	for i := 0; i < n; i++ {
		ports := testnet.KernelFreePorts(t, 3)
		cfg := agent.Config{
			DataDir:              filepath.Join(t.TempDir(), "data"),
			NodeName:             fmt.Sprintf("node-%d", i),
			BindAddr:             net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
			RPCPort:              ports[1],
			HTTPPort:             ports[2],
			Bootstrap:            i == 0,
			ServerTLSConfig:      serverTLS,
			PeerTLSConfig:        peerTLS,
			ACLModelFile:         files.ACLModelFile,
			ACLPolicyFile:        files.ACLPolicyFile,
			GossipProfile:        discovery.ProfileLocal,
			GossipKeys:           [][]byte{c.gossipKey},
			RefusedRetryInterval: 200 * time.Millisecond,
			ReconcileInterval:    100 * time.Millisecond,
			// Raft's own defaults: with 300 ms and a 150 ms lease, a
			// loaded machine running -race moved leadership mid-test
			// (tests that name the leader then failed).
			RaftHeartbeatTimeout:   time.Second,
			RaftElectionTimeout:    time.Second,
			RaftLeaderLeaseTimeout: 500 * time.Millisecond,
			RaftCommitTimeout:      10 * time.Millisecond,
			ShutdownTimeout:        5 * time.Second,
			Logger:                 zaptest.NewLogger(t).Named(fmt.Sprintf("node-%d", i)),
		}
		if i > 0 {
			cfg.StartJoinAddrs = []string{c.nodes[0].cfg.BindAddr}
		}
		if configure != nil {
			configure(&cfg)
		}
		node := &testNode{cfg: cfg}
		c.nodes = append(c.nodes, node)
		c.start(i)
		if i == 0 {
			c.waitForLeader()
		}
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			if node.agent != nil {
				_ = node.agent.Shutdown()
			}
		}
	})
	c.waitForServers(n)
	return c
}

// newGossipKey returns a fresh gossip key.
func newGossipKey(t *testing.T) []byte {
	t.Helper()
	encoded, err := discovery.GenerateGossipKey()
	require.NoError(t, err)
	keys, err := discovery.ParseGossipKeys([]byte(encoded))
	require.NoError(t, err)
	return keys[0]
}

// start (re)starts node i with its config; a restarted node joins node 0's
// successors through every other node's Serf address.
func (c *testCluster) start(i int) {
	c.t.Helper()
	node := c.nodes[i]
	a, err := agent.New(node.cfg)
	require.NoError(c.t, err)
	node.agent = a
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	require.NoError(c.t, c.nodes[i].agent.Shutdown())
	c.nodes[i].agent = nil
}

// crash kills node i the hard way (Agent.Crash): its RPC port, gRPC
// connections and Raft stop at once and Serf is not told. The other helpers
// treat it as stopped; the rest of it is shut down when the test ends. It
// cannot be restarted.
func (c *testCluster) crash(i int) {
	c.t.Helper()
	a := c.nodes[i].agent
	require.NoError(c.t, a.Crash())
	c.nodes[i].agent = nil
	c.t.Cleanup(func() { _ = a.Shutdown() })
}

// restart starts a stopped node again on the same ports and data, joining
// through the Serf addresses of the nodes still running.
func (c *testCluster) restart(i int) {
	c.t.Helper()
	node := c.nodes[i]
	node.cfg.StartJoinAddrs = nil
	for j, other := range c.nodes {
		if j != i && other.agent != nil {
			node.cfg.StartJoinAddrs = append(node.cfg.StartJoinAddrs, other.cfg.BindAddr)
		}
	}
	c.start(i)
}

// client returns a Log client for node i authenticated as root.
func (c *testCluster) client(i int) api.LogClient {
	c.t.Helper()
	return c.clientAs(i, c.files.RootClientCertFile, c.files.RootClientKeyFile)
}

func (c *testCluster) clientAs(i int, certFile, keyFile string) api.LogClient {
	c.t.Helper()
	tlsCfg, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: certFile, KeyFile: keyFile, CAFile: c.files.CAFile, ServerAddress: "127.0.0.1",
	})
	require.NoError(c.t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.nodes[i].cfg.RPCPort))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = conn.Close() })
	return api.NewLogClient(conn)
}

func (c *testCluster) rootTLS() *tls.Config {
	c.t.Helper()
	tlsCfg, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: c.files.RootClientCertFile, KeyFile: c.files.RootClientKeyFile,
		CAFile: c.files.CAFile, ServerAddress: "127.0.0.1",
	})
	require.NoError(c.t, err)
	return tlsCfg
}

// leaderIndex returns the index of the running node that believes it leads,
// or -1.
func (c *testCluster) leaderIndex() int {
	for i, node := range c.nodes {
		if node.agent == nil {
			continue
		}
		servers, err := node.agent.Log().GetServers()
		if err != nil {
			continue
		}
		for _, s := range servers {
			if s.GetIsLeader() && s.GetId() == node.cfg.NodeName {
				return i
			}
		}
	}
	return -1
}

// waitForLeader returns the index of the node that leads, waiting for one.
func (c *testCluster) waitForLeader() int {
	c.t.Helper()
	leader := -1
	require.Eventually(c.t, func() bool {
		leader = c.leaderIndex()
		return leader >= 0
	}, 20*time.Second, 20*time.Millisecond, "no leader elected")
	return leader
}

// waitForServers waits until the Raft configuration of every running node
// but those in skip holds exactly want servers.
func (c *testCluster) waitForServers(want int, skip ...int) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		for i, node := range c.nodes {
			if node.agent == nil || slices.Contains(skip, i) {
				continue
			}
			servers, err := node.agent.Log().GetServers()
			if err != nil || len(servers) != want {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "cluster did not reach %d servers", want)
}

// produce appends values through the leader, retrying while leadership
// moves, and returns their offsets.
func (c *testCluster) produce(values ...string) []uint64 {
	c.t.Helper()
	offsets := make([]uint64, 0, len(values))
	for _, v := range values {
		var off uint64
		require.Eventually(c.t, func() bool {
			leader := c.leaderIndex()
			if leader < 0 {
				return false
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := c.client(leader).Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte(v)}})
			if err != nil {
				return false
			}
			off = res.GetOffset()
			return true
		}, 30*time.Second, 50*time.Millisecond, "produce %q", v)
		offsets = append(offsets, off)
	}
	return offsets
}

// readAll reads offsets [0, n) from node i, waiting for replication.
func (c *testCluster) readAll(i int, n uint64) []string {
	c.t.Helper()
	client := c.client(i)
	got := make([]string, n)
	for off := range n {
		var record *api.Record
		require.Eventually(c.t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := client.Consume(ctx, &api.ConsumeRequest{Offset: off})
			record = res.GetRecord()
			return err == nil
		}, 30*time.Second, 20*time.Millisecond, "node %d: Consume(%d)", i, off)
		require.Equal(c.t, off, record.GetOffset(), "node %d: Consume(%d).Offset", i, off)
		got[off] = string(record.GetValue())
	}
	return got
}

// requireHighest checks that node i holds exactly offsets [0, n): n-1 is
// readable and n is past the end.
func (c *testCluster) requireHighest(i int, n uint64) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		l := c.nodes[i].agent.Log()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := l.Read(ctx, "", n-1); err != nil {
			return false
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "node %d never held offset %d", i, n-1)
	// Past the end, Read waits (bounded) in case the offset is committed but
	// not yet applied here; either way it must not return a record.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rec, err := c.nodes[i].agent.Log().Read(ctx, "", n)
	require.Error(c.t, err, "node %d: Read(%d) past the end = %v", i, n, rec)
	var oor api.ErrOffsetOutOfRange
	if !errors.As(err, &oor) {
		require.ErrorIs(c.t, err, context.DeadlineExceeded, "node %d: Read(%d) past the end", i, n)
	}
}

func values(prefix string, n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return vs
}

func sortedIDs(servers []*api.Server) []string {
	ids := make([]string, 0, len(servers))
	for _, s := range servers {
		ids = append(ids, s.GetId())
	}
	sort.Strings(ids)
	return ids
}
