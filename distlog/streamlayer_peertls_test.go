package distlog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// handshakeRecorder is a handshake observer that keeps what it heard.
type handshakeRecorder struct {
	mu      sync.Mutex
	results []HandshakeResult // guarded by mu
}

func (r *handshakeRecorder) observe(result HandshakeResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, result)
}

// wait returns the first result, waiting up to 5 s for it.
func (r *handshakeRecorder) wait(t *testing.T) HandshakeResult {
	t.Helper()
	var first HandshakeResult
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.results) == 0 {
			return false
		}
		first = r.results[0]
		return true
	}, 5*time.Second, time.Millisecond, "no handshake observed")
	return first
}

// clientOnlyCert issues a certificate like the book's root-client.pem: client
// auth only, no IP or DNS names, so it could never serve.
func (p *testPKI) clientOnlyCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestStreamLayerBookPeerCertificate: as in the seed book, a node dials with
// a plain client certificate (no IP SANs) and the accepting side serves its
// server certificate, so the handshake succeeds both ways; each side's
// observer hears the success and the certificate the other side presented.
func TestStreamLayerBookPeerCertificate(t *testing.T) {
	pki := newTestPKI(t)
	var serverSide, clientSide handshakeRecorder
	server := NewStreamLayer(newTestListener(t), pki.serverTLS(), nil, WithHandshakeObserver(serverSide.observe))
	peerTLS := pki.peerTLS()
	peerTLS.Certificates = []tls.Certificate{pki.clientOnlyCert(t, "root")}
	client := NewStreamLayer(newTestListener(t), nil, peerTLS, WithHandshakeObserver(clientSide.observe))
	accepted := acceptOne(t, server)

	out, err := client.Dial(raft.ServerAddress(server.Addr().String()), 5*time.Second)
	require.NoError(t, err)
	defer func() { _ = out.Close() }()
	in := receiveConn(t, accepted)
	// The dialing side knows its certificate was accepted once the peer
	// answers (TLS 1.3 reports a refusal on the first read).
	_, err = in.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(out, make([]byte, 1))
	require.NoError(t, err)

	dialed := clientSide.wait(t)
	require.NoError(t, dialed.Err)
	require.True(t, dialed.Dialing)
	require.Equal(t, server.Addr().String(), dialed.Peer)
	require.Equal(t, "node", dialed.Certificate.Subject.CommonName)

	served := serverSide.wait(t)
	require.NoError(t, served.Err)
	require.False(t, served.Dialing)
	require.Equal(t, "root", served.Certificate.Subject.CommonName)
}

// TestStreamLayerObservesFailedHandshakes: a failed verification reaches the
// observer of the side that failed it, with the certificate that failed; a
// dialer whose certificate the peer refused hears it too.
func TestStreamLayerObservesFailedHandshakes(t *testing.T) {
	t.Run("dialing a peer that refuses this node's certificate", func(t *testing.T) {
		pki, otherPKI := newTestPKI(t), newTestPKI(t)
		server := NewStreamLayer(newTestListener(t), otherPKI.serverTLS(), nil)
		accepted := acceptOne(t, server)
		go func() {
			if conn, ok := <-accepted; ok {
				_, _ = conn.Read(make([]byte, 1)) // the server half of the handshake
				_ = conn.Close()
			}
		}()
		peerTLS := pki.peerTLS()
		peerTLS.RootCAs = otherPKI.caPool // trusts the server, but is not trusted by it
		var observed handshakeRecorder
		client := NewStreamLayer(newTestListener(t), nil, peerTLS, WithHandshakeObserver(observed.observe))
		out, err := client.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second)
		if err == nil { // TLS 1.3: the refusal comes on the first read
			defer func() { _ = out.Close() }()
			_, err = out.Read(make([]byte, 1))
		}
		require.Error(t, err)

		got := observed.wait(t)
		require.True(t, got.Dialing)
		require.Error(t, got.Err)
		require.Contains(t, got.Err.Error(), "tls")
	})
	t.Run("dialing a server this node cannot verify", func(t *testing.T) {
		pki, otherPKI := newTestPKI(t), newTestPKI(t)
		server := NewStreamLayer(newTestListener(t), otherPKI.serverTLS(), nil)
		accepted := acceptOne(t, server)
		go func() {
			if conn, ok := <-accepted; ok {
				_, _ = conn.Read(make([]byte, 1)) // the server half of the handshake
				_ = conn.Close()
			}
		}()
		var observed handshakeRecorder
		client := NewStreamLayer(newTestListener(t), nil, pki.peerTLS(), WithHandshakeObserver(observed.observe))
		_, err := client.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second)
		require.Error(t, err)

		got := observed.wait(t)
		require.True(t, got.Dialing)
		var verifyErr *tls.CertificateVerificationError
		require.ErrorAs(t, got.Err, &verifyErr)
		require.NotNil(t, got.Certificate, "the server's unverified certificate")
		require.Equal(t, otherPKI.ca.Subject.CommonName, got.Certificate.Issuer.CommonName)
	})
	t.Run("accepting a peer certificate from another CA", func(t *testing.T) {
		pki, otherPKI := newTestPKI(t), newTestPKI(t)
		var observed handshakeRecorder
		server := NewStreamLayer(newTestListener(t), pki.serverTLS(), nil, WithHandshakeObserver(observed.observe))
		accepted := acceptOne(t, server)
		cfg := otherPKI.peerTLS()
		cfg.RootCAs = pki.caPool // trusts the server, but is not trusted by it
		conn := dialHandshakeInBackground(t, server.Addr().String(), cfg)
		defer func() { _ = conn.Close() }()
		receiveConn(t, accepted)

		got := observed.wait(t)
		require.False(t, got.Dialing)
		require.Error(t, got.Err)
		require.NotNil(t, got.Certificate, "the dialer's unverified certificate")
		require.Equal(t, "node", got.Certificate.Subject.CommonName)
	})
}
