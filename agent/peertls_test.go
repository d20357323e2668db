package agent_test

import (
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

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proglog/proglog/agent"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
)

// handshakeWarning is the message of the agent's warning about a failed peer
// handshake.
const handshakeWarning = "raft peer handshake failed; the nodes cannot replicate until it succeeds"

// TestClusterWithBookPeerCertificate: as in the seed book, every node dials
// its Raft peers with the root client certificate (no IP SANs, client auth
// only) while the Raft branch serves the server certificate; the cluster
// forms and replicates.
func TestClusterWithBookPeerCertificate(t *testing.T) {
	files := tlsconfigtest.Files(t)
	peerTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files.RootClientCertFile, KeyFile: files.RootClientKeyFile, CAFile: files.CAFile, Peer: true,
	})
	require.NoError(t, err)
	c := newTestCluster(t, 3, func(cfg *agent.Config) { cfg.PeerTLSConfig = peerTLS })
	want := values("book", 3)
	c.produce(want...)
	for i := range c.nodes {
		require.Equal(t, want, c.readAll(i, uint64(len(want))), "node %d", i)
	}
}

// TestPeerHandshakeFailureIsReported: a node whose peer CA is not the one
// that signed the other nodes' certificates refuses the leader's Raft
// connections. It warns once per peer, naming the certificate files and the
// verification error, however often the leader retries, and /readyz gives
// that reason.
func TestPeerHandshakeFailureIsReported(t *testing.T) {
	c := newTestCluster(t, 2, nil)
	files := c.files
	otherCA := tlsconfigtest.NewCA(t, "another proglog CA")
	otherPEM, err := os.ReadFile(otherCA.CertFile)
	require.NoError(t, err)
	otherPool := x509.NewCertPool()
	require.True(t, otherPool.AppendCertsFromPEM(otherPEM))

	cfg := c.nodes[1].cfg
	ports := testnet.KernelFreePorts(t, 3)
	cfg.NodeName = "node-misconfigured"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.BindAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	cfg.RPCPort, cfg.HTTPPort = ports[1], ports[2]
	cfg.StartJoinAddrs = []string{c.nodes[0].cfg.BindAddr}
	cfg.PeerTLSConfig = cfg.PeerTLSConfig.Clone()
	cfg.PeerTLSConfig.RootCAs = otherPool
	cfg.PeerServerTLSConfig = cfg.ServerTLSConfig.Clone()
	cfg.PeerServerTLSConfig.ClientCAs = otherPool
	cfg.PeerServerTLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.PeerTLSFiles = agent.PeerTLSFiles{CertFile: files.ServerCertFile, CAFile: otherCA.CertFile, ServerCertFile: files.ServerCertFile}
	core, logs := observer.New(zapcore.InfoLevel)
	cfg.Logger = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	c.nodes = append(c.nodes, &testNode{cfg: cfg})
	bad := len(c.nodes) - 1
	c.start(bad)

	// The leader keeps retrying; each attempt fails a handshake on the
	// misconfigured node, and Raft logs each failed connection.
	require.Eventually(t, func() bool {
		return countTLSFailures(logs) >= 3
	}, 30*time.Second, 50*time.Millisecond, "the leader never retried its Raft connection 3 times")
	warnings := logs.FilterMessage(handshakeWarning).All()
	perPeer := map[string]int{}
	for _, w := range warnings {
		require.Equal(t, zapcore.WarnLevel, w.Level)
		fields := w.ContextMap()
		perPeer[fmt.Sprint(fields["peer"])]++
		require.Equal(t, files.ServerCertFile, fields["server_tls_cert_file"], "warning fields %v", fields)
		require.Equal(t, otherCA.CertFile, fields["peer_tls_ca_file"], "warning fields %v", fields)
		requireVerificationError(t, fmt.Sprint(fields["error"]))
	}
	require.NotEmpty(t, perPeer, "no warning about the failed handshakes")
	for peer, n := range perPeer {
		require.Equalf(t, 1, n, "warnings about %s = %d, want 1 however often it fails", peer, n)
	}

	client := c.httpsClient(false)
	var body string
	require.Eventually(t, func() bool {
		res, err := client.Get(c.httpURL(bad, "/readyz"))
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		body = string(b)
		return res.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "tls handshake")
	}, 30*time.Second, 50*time.Millisecond, "/readyz = %q, want 503 naming the failed handshake", body)
	require.Contains(t, body, "no raft leader")
	requireVerificationError(t, body)
	require.Contains(t, body, otherCA.CertFile)
}

// requireVerificationError checks that msg carries the verification error of
// a peer certificate from the wrong CA. Go's TLS client offers no
// certificate when none of its own is signed by a CA the server asks for,
// so the server usually sees none; a client that sends it anyway fails
// verification.
func requireVerificationError(t *testing.T, msg string) {
	t.Helper()
	require.Truef(t, strings.Contains(msg, "client didn't provide a certificate") ||
		strings.Contains(msg, "certificate signed by unknown authority"),
		"%q does not carry the verification error", msg)
}

// countTLSFailures counts the log entries other than the agent's warning
// that report a failed Raft TLS handshake (Raft's own, one per connection).
func countTLSFailures(logs *observer.ObservedLogs) int {
	n := 0
	for _, e := range logs.All() {
		if e.Message == handshakeWarning {
			continue
		}
		if strings.Contains(e.Message+fmt.Sprint(e.ContextMap()), "tls handshake") {
			n++
		}
	}
	return n
}
