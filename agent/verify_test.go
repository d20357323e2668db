package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proglog/proglog/agent"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/discovery"
	"github.com/proglog/proglog/server/telemetry/telemetrytest"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
)

// msgRefused is the warning verify.go logs once per refused member.
const msgRefused = "member refused as a raft voter"

// observeLogs returns a configure function that copies every node's logs
// into an observer, and the observer's logs.
func observeLogs() (func(*agent.Config), *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return func(cfg *agent.Config) {
		cfg.Logger = cfg.Logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return zapcore.NewTee(c, core)
		}))
	}, logs
}

// refusals returns the log entries with message msg about member.
func refusals(logs *observer.ObservedLogs, msg, member string) []observer.LoggedEntry {
	var found []observer.LoggedEntry
	for _, e := range logs.FilterMessage(msg).All() {
		if e.ContextMap()["member"] == member {
			found = append(found, e)
		}
	}
	return found
}

// nodeCerts names the certificate files a node runs with: its server and
// peer certificate and the CA it trusts.
type nodeCerts struct {
	cert, key, ca string
}

// nodeConfig is the config of a node that joins c through node 0 with the
// given certificates and gossip key, on fresh ports.
func (c *testCluster) nodeConfig(name string, certs nodeCerts, gossipKey []byte) agent.Config {
	c.t.Helper()
	serverTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: certs.cert, KeyFile: certs.key, CAFile: certs.ca, Server: true,
	})
	require.NoError(c.t, err)
	peerTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: certs.cert, KeyFile: certs.key, CAFile: certs.ca, Peer: true,
	})
	require.NoError(c.t, err)
	ports := testnet.KernelFreePorts(c.t, 3)
	cfg := c.nodes[0].cfg
	cfg.DataDir = filepath.Join(c.t.TempDir(), "data")
	cfg.NodeName = name
	cfg.BindAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	cfg.RPCPort, cfg.HTTPPort = ports[1], ports[2]
	cfg.Bootstrap = false
	cfg.StartJoinAddrs = []string{c.nodes[0].cfg.BindAddr}
	cfg.ServerTLSConfig, cfg.PeerTLSConfig, cfg.PeerServerTLSConfig = serverTLS, peerTLS, nil
	cfg.GossipKeys = [][]byte{gossipKey}
	cfg.Logger = zaptest.NewLogger(c.t).Named(name)
	return cfg
}

// startNode starts an agent with cfg, shut down when the test ends.
func startNode(t *testing.T, cfg agent.Config) *agent.Agent {
	t.Helper()
	a, err := agent.New(cfg)
	require.NoError(t, err, "start %s", cfg.NodeName)
	t.Cleanup(func() { _ = a.Shutdown() })
	return a
}

// serverCerts are the certificates `make gencert` gives every node.
func (c *testCluster) serverCerts() nodeCerts {
	return nodeCerts{cert: c.files.ServerCertFile, key: c.files.ServerKeyFile, ca: c.files.CAFile}
}

// foreignCerts are a server certificate for 127.0.0.1, with the same
// subject as the cluster's, from a CA the cluster does not know: what
// `make gencert CONFIG_DIR=/elsewhere` gives.
func foreignCerts(t *testing.T) nodeCerts {
	ca := tlsconfigtest.NewCA(t, "foreign CA")
	cert, key := ca.Issue(t, tlsconfigtest.CertOptions{CommonName: "127.0.0.1", Hosts: []string{"127.0.0.1", "localhost"}})
	return nodeCerts{cert: cert, key: key, ca: ca.CertFile}
}

// requireVoters checks that node i's Raft configuration is exactly ids.
func requireVoters(t *testing.T, c *testCluster, i int, ids ...string) {
	t.Helper()
	servers, err := c.nodes[i].agent.Log().GetServers()
	require.NoError(t, err)
	require.Equal(t, ids, sortedIDs(servers), "node %d: raft configuration", i)
}

// waitRefusedAndRemoved waits until the leader has refused member (with a
// reason containing why) and no longer lists it in Serf.
func waitRefusedAndRemoved(t *testing.T, c *testCluster, logs *observer.ObservedLogs, member, why string) {
	t.Helper()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		found := refusals(logs, msgRefused, member)
		if assert.NotEmpty(ct, found, "%s: no refusal logged", member) {
			assert.Contains(ct, found[0].ContextMap()["error"], why, "%s: refusal reason", member)
		}
		leader := c.leaderIndex()
		if assert.GreaterOrEqual(ct, leader, 0, "no leader") {
			for _, m := range c.nodes[leader].agent.SerfMembers() {
				assert.NotEqual(ct, member, m.Name, "%s: still in the leader's Serf members (%s)", member, m.Status)
			}
		}
	}, 30*time.Second, 50*time.Millisecond)
}

// TestJoinVerification: a member whose certificate comes from another CA,
// and one whose certificate is the cluster CA's but for clients only, are
// refused as voters (logged once, removed from Serf) although they hold the
// gossip key; a node with the cluster's server certificate joins after them.
func TestJoinVerification(t *testing.T) {
	observe, logs := observeLogs()
	c := newTestCluster(t, 1, func(cfg *agent.Config) {
		observe(cfg)
		// The reconcile loop may verify a refused member again every
		// 100 ms until it is gone from Serf: it must not log the refusal
		// again.
		cfg.RefusedRetryInterval = 100 * time.Millisecond
	})

	rogue := startNode(t, c.nodeConfig("rogue-foreign-ca", foreignCerts(t), c.gossipKey))
	clientOnly := nodeCerts{cert: c.files.RootClientCertFile, key: c.files.RootClientKeyFile, ca: c.files.CAFile}
	startNode(t, c.nodeConfig("rogue-client-cert", clientOnly, c.gossipKey))
	waitRefusedAndRemoved(t, c, logs, "rogue-foreign-ca", "certificate signed by unknown authority")
	// root-client.pem names no host, and is for client auth only.
	waitRefusedAndRemoved(t, c, logs, "rogue-client-cert", "tls: failed to verify certificate")

	real := c.nodeConfig("node-1", c.serverCerts(), c.gossipKey)
	observe(&real)
	startNode(t, real)
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		servers, err := c.nodes[0].agent.Log().GetServers()
		assert.NoError(ct, err)
		assert.Equal(ct, []string{"node-0", "node-1"}, sortedIDs(servers))
	}, 20*time.Second, 20*time.Millisecond)
	requireVoters(t, c, 0, "node-0", "node-1")
	require.Empty(t, refusals(logs, msgRefused, "node-1"), "the real node was refused")

	for _, rogue := range []string{"rogue-foreign-ca", "rogue-client-cert"} {
		require.Len(t, refusals(logs, msgRefused, rogue), 1, "%s: refusal logged at warning level more than once", rogue)
	}

	// The leader counts the refusals by kind.
	m := telemetrytest.Scrape(t, c.httpsClient(true), c.httpURL(0, "/metrics"))
	refused, ok := m.Value("proglog_raft_join_refusals_total", map[string]string{"reason": "certificate"})
	require.True(t, ok, "proglog_raft_join_refusals_total{reason=certificate} missing")
	require.GreaterOrEqual(t, refused, 2.0, "certificate refusals")

	// The refused node itself says why it is not ready.
	code, body := readyz(t, rogue.HTTPAddr())
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "no raft leader")
	require.Contains(t, body, "this node is not in the raft configuration")
}

// readyz GETs /readyz on the HTTPS address addr, whatever certificate the
// node shows (rogue nodes have their own CA), and returns the status code and
// body.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the body is all the test reads
	}}
	defer client.CloseIdleConnections()
	res, err := client.Get("https://" + addr + "/readyz")
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

// TestJoinRefusesCertificatesOfTheClusterCA: certificates the cluster's own
// CA signed are not enough. One for client auth only (with the right host)
// fails the server-auth check; a server certificate for another subject
// fails the default rule (the subject of the leader's own server
// certificate, as the policy has no join lines).
func TestJoinRefusesCertificatesOfTheClusterCA(t *testing.T) {
	observe, logs := observeLogs()
	c := newTestCluster(t, 1, observe)
	ca := tlsconfigtest.LoadCA(t, c.files.CAFile, filepath.Join(c.files.Dir, "ca-key.pem"))
	issue := func(cn string, usage ...x509.ExtKeyUsage) nodeCerts {
		cert, key := ca.Issue(t, tlsconfigtest.CertOptions{CommonName: cn, Hosts: []string{"127.0.0.1"}, ExtKeyUsage: usage})
		return nodeCerts{cert: cert, key: key, ca: c.files.CAFile}
	}

	startNode(t, c.nodeConfig("client-only", issue("127.0.0.1", x509.ExtKeyUsageClientAuth), c.gossipKey))
	startNode(t, c.nodeConfig("other-subject", issue("other", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth), c.gossipKey))
	waitRefusedAndRemoved(t, c, logs, "client-only", "incompatible key usage")
	waitRefusedAndRemoved(t, c, logs, "other-subject", `certificate subject "other" is not this cluster's server subject "127.0.0.1"`)
	requireVoters(t, c, 0, "node-0")
}

// TestJoinPolicyDecidesWhoJoins: with join lines in the policy, exactly
// the subjects they name may join: not the cluster's server certificate's
// when it is not named, and a named one with a certificate of the cluster CA.
func TestJoinPolicyDecidesWhoJoins(t *testing.T) {
	observe, logs := observeLogs()
	policy := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(policy, []byte("p, root, *, produce\np, root, *, consume\np, someone-else, *, join\n"), 0o600))
	c := newTestCluster(t, 1, func(cfg *agent.Config) {
		observe(cfg)
		cfg.ACLPolicyFile = policy
	})

	cfg := c.nodeConfig("node-1", c.serverCerts(), c.gossipKey)
	startNode(t, cfg)
	waitRefusedAndRemoved(t, c, logs, "node-1", `does not let "127.0.0.1" join`)
	requireVoters(t, c, 0, "node-0")

	// A certificate of the cluster CA for the subject the policy names joins.
	ca := tlsconfigtest.LoadCA(t, c.files.CAFile, filepath.Join(c.files.Dir, "ca-key.pem"))
	cert, key := ca.Issue(t, tlsconfigtest.CertOptions{CommonName: "someone-else", Hosts: []string{"127.0.0.1"}})
	startNode(t, c.nodeConfig("node-2", nodeCerts{cert: cert, key: key, ca: c.files.CAFile}, c.gossipKey))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		servers, err := c.nodes[0].agent.Log().GetServers()
		assert.NoError(ct, err)
		assert.Equal(ct, []string{"node-0", "node-2"}, sortedIDs(servers))
	}, 20*time.Second, 20*time.Millisecond)
	require.Empty(t, refusals(logs, msgRefused, "node-2"))
}

// TestTwoRoguesCannotTakeTheQuorum is the scenario of issue 12: agents
// with certificates from another CA point at a three-node cluster. One with
// its own gossip key does not get into the gossip at all; two that hold the
// cluster's gossip key get in, but never become voters, so when a real node
// then crashes the two left still elect a leader and take writes.
func TestTwoRoguesCannotTakeTheQuorum(t *testing.T) {
	observe, logs := observeLogs()
	c := newTestCluster(t, 3, observe)

	outsider := c.nodeConfig("rogue-0", foreignCerts(t), newGossipKey(t))
	_, err := agent.New(outsider)
	require.ErrorIs(t, err, discovery.ErrJoin, "a node with another gossip key joined")

	for i := 1; i <= 2; i++ {
		startNode(t, c.nodeConfig(fmt.Sprintf("rogue-%d", i), foreignCerts(t), c.gossipKey))
	}
	for i := 1; i <= 2; i++ {
		waitRefusedAndRemoved(t, c, logs, fmt.Sprintf("rogue-%d", i), "certificate signed by unknown authority")
	}
	leader := c.waitForLeader()
	requireVoters(t, c, leader, "node-0", "node-1", "node-2")

	// Crash a follower: two voters of three remain.
	victim := (leader + 1) % 3
	c.crash(victim)
	offsets := c.produce("after the crash")
	require.Len(t, offsets, 1)
	leader = c.waitForLeader()
	requireVoters(t, c, leader, "node-0", "node-1", "node-2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.client(leader).Consume(ctx, &api.ConsumeRequest{Offset: offsets[0]})
	require.NoError(t, err)
	require.Equal(t, "after the crash", string(res.GetRecord().GetValue()))
	for _, e := range logs.FilterMessage(msgRefused).All() {
		require.True(t, strings.HasPrefix(e.ContextMap()["member"].(string), "rogue-"), "refused %v", e.ContextMap())
	}

	// With a second real node gone, the last one has no quorum, and its
	// /readyz says so, naming the voters it waits for.
	leader = c.waitForLeader()
	last := 3 - victim - leader
	c.crash(leader)
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		code, body := readyz(t, c.nodes[last].agent.HTTPAddr())
		assert.Equal(ct, http.StatusServiceUnavailable, code)
		assert.Contains(ct, body, "no raft leader")
		assert.Contains(ct, body, "the raft configuration has 3 voters (node-0, node-1, node-2): a leader needs 2 of them")
	}, 20*time.Second, 50*time.Millisecond)
}
