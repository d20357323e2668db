package agent_test

import (
	"crypto/tls"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/agent"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
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
