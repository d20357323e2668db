package agent_test

import (
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proglog/proglog/agent"
	"github.com/proglog/proglog/discovery"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
)

// TestClusterAdvertiseHost runs two nodes that advertise a host name
// (localhost) instead of their bound IP, as StatefulSet pods advertise their
// DNS names: the Raft configuration and GetServers carry the name, Raft
// peers dial it and verify the peer's certificate against it (the peer TLS
// config names no server), and records replicate. Each node is also given
// its own Serf address in StartJoinAddrs, as every pod of a StatefulSet is
// given the same list: the bootstrap node, which has nobody else to join,
// must still start.
func TestClusterAdvertiseHost(t *testing.T) {
	files := tlsconfigtest.Files(t)
	var serfPorts []int
	c := newTestCluster(t, 2, func(cfg *agent.Config) {
		cfg.AdvertiseHost = "localhost"
		peerTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
			CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile, Peer: true,
		})
		require.NoError(t, err)
		cfg.PeerTLSConfig = peerTLS
		_, port, err := net.SplitHostPort(cfg.BindAddr)
		require.NoError(t, err)
		p, err := strconv.Atoi(port)
		require.NoError(t, err)
		serfPorts = append(serfPorts, p)
		own := net.JoinHostPort("localhost", port)
		if len(serfPorts) == 1 {
			cfg.StartJoinAddrs = []string{own}
		} else {
			cfg.StartJoinAddrs = append([]string{own}, cfg.StartJoinAddrs...)
		}
	})
	for i, node := range c.nodes {
		require.Equal(t, net.JoinHostPort("localhost", strconv.Itoa(node.cfg.RPCPort)), node.agent.RPCAddr(), "node %d", i)
	}
	servers, err := c.nodes[0].agent.Log().GetServers()
	require.NoError(t, err)
	require.Len(t, servers, 2)
	for _, s := range servers {
		host, _, err := net.SplitHostPort(s.GetRpcAddr())
		require.NoError(t, err)
		require.Equal(t, "localhost", host, "server %s", s.GetId())
	}
	want := values("advertised", 5)
	c.produce(want...)
	require.Equal(t, want, c.readAll(1, uint64(len(want))))
}

// TestAdvertiseHostValidation checks that New refuses an AdvertiseHost that
// no peer could dial: one with a port, or a wildcard address.
func TestAdvertiseHostValidation(t *testing.T) {
	for _, host := range []string{"localhost:8401", "0.0.0.0", "::"} {
		_, err := agent.New(agent.Config{
			DataDir: t.TempDir(), NodeName: "n", AdvertiseHost: host,
			ServerTLSConfig: &tls.Config{}, PeerTLSConfig: &tls.Config{},
			ACLModelFile: "m", ACLPolicyFile: "p",
		})
		require.ErrorContains(t, err, "AdvertiseHost", "AdvertiseHost %q", host)
	}
}

// TestStartJoinTimeout: a node started before the node it joins (pods
// started together) keeps trying for StartJoinTimeout instead of failing,
// and joins once that node is up; without it, New fails at once with
// discovery.ErrJoin.
func TestStartJoinTimeout(t *testing.T) {
	files := tlsconfigtest.Files(t)
	serverTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile, Server: true,
	})
	require.NoError(t, err)
	peerTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile, Peer: true,
	})
	require.NoError(t, err)
	gossipKey := newGossipKey(t)
	config := func(name string, ports []int) agent.Config {
		return agent.Config{
			DataDir: t.TempDir(), NodeName: name,
			BindAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), RPCPort: ports[1], HTTPPort: ports[2],
			ServerTLSConfig: serverTLS, PeerTLSConfig: peerTLS,
			ACLModelFile: files.ACLModelFile, ACLPolicyFile: files.ACLPolicyFile,
			GossipProfile: discovery.ProfileLocal, GossipKeys: [][]byte{gossipKey}, ReconcileInterval: 100 * time.Millisecond,
			RaftHeartbeatTimeout: 300 * time.Millisecond, RaftElectionTimeout: 300 * time.Millisecond,
			RaftLeaderLeaseTimeout: 150 * time.Millisecond, RaftCommitTimeout: 10 * time.Millisecond,
		}
	}
	first := config("node-0", testnet.KernelFreePorts(t, 3))
	first.Bootstrap = true

	// Without a timeout: one try.
	alone := config("alone", testnet.KernelFreePorts(t, 3))
	alone.StartJoinAddrs = []string{first.BindAddr}
	_, err = agent.New(alone)
	require.ErrorIs(t, err, discovery.ErrJoin)

	second := config("node-1", testnet.KernelFreePorts(t, 3))
	second.StartJoinAddrs = []string{first.BindAddr}
	second.StartJoinTimeout = time.Minute
	core, logs := observer.New(zap.InfoLevel)
	second.Logger = zap.New(core)
	type result struct {
		a   *agent.Agent
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := agent.New(second)
		done <- result{a, err}
	}()
	require.Eventually(t, func() bool {
		return logs.FilterMessage("no start-join address answered yet; retrying").Len() > 0
	}, 30*time.Second, 10*time.Millisecond, "node-1 retries while node-0 is down")

	a0, err := agent.New(first)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a0.Shutdown() })
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("node-1 did not join node-0 once it was up")
	}
	require.NoError(t, r.err)
	t.Cleanup(func() { _ = r.a.Shutdown() })
	require.Eventually(t, func() bool {
		servers, err := a0.Log().GetServers()
		return err == nil && len(servers) == 2
	}, 30*time.Second, 20*time.Millisecond, "node-1 is a voter")
}
