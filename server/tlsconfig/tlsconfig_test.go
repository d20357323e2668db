package tlsconfig_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

func TestSetupTLSConfigRejectsInvalidConfig(t *testing.T) {
	files := tlsconfigtest.Files(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a certificate"), 0o600))

	tests := []struct {
		name    string
		cfg     tlsconfig.Config
		wantErr error // nil: any error
	}{
		{"cert without key", tlsconfig.Config{CertFile: files.RootClientCertFile, CAFile: files.CAFile}, tlsconfig.ErrInvalidConfig},
		{"key without cert", tlsconfig.Config{KeyFile: files.RootClientKeyFile, CAFile: files.CAFile}, tlsconfig.ErrInvalidConfig},
		{"server without certificate", tlsconfig.Config{CAFile: files.CAFile, Server: true}, tlsconfig.ErrInvalidConfig},
		{"server without CA", tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, Server: true}, tlsconfig.ErrInvalidConfig},
		{"peer client without certificate", tlsconfig.Config{CAFile: files.CAFile, Peer: true}, tlsconfig.ErrInvalidConfig},
		{"peer client without CA", tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, Peer: true}, tlsconfig.ErrInvalidConfig},
		{"CA file of garbage", tlsconfig.Config{CAFile: garbage}, tlsconfig.ErrInvalidConfig},
		{"missing CA file", tlsconfig.Config{CAFile: filepath.Join(t.TempDir(), "none.pem")}, os.ErrNotExist},
		{"missing certificate file", tlsconfig.Config{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"}, os.ErrNotExist},
		{"key of another certificate", tlsconfig.Config{CertFile: files.RootClientCertFile, KeyFile: files.NobodyClientKeyFile}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tlsconfig.SetupTLSConfig(tt.cfg)
			require.Error(t, err, "SetupTLSConfig(%+v) = %v, want an error", tt.cfg, got)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

func TestSetupTLSConfigShapes(t *testing.T) {
	files := tlsconfigtest.Files(t)
	tests := []struct {
		name           string
		cfg            tlsconfig.Config
		wantClientAuth tls.ClientAuthType
		wantServerName string
		wantCerts      int
		wantServerSide bool
	}{
		{
			name:           "client verifying the server",
			cfg:            tlsconfig.Config{CAFile: files.CAFile, ServerAddress: "127.0.0.1:8400"},
			wantServerName: "127.0.0.1",
		},
		{
			name: "mTLS client",
			cfg: tlsconfig.Config{CertFile: files.RootClientCertFile, KeyFile: files.RootClientKeyFile,
				CAFile: files.CAFile, ServerAddress: "localhost"},
			wantServerName: "localhost",
			wantCerts:      1,
		},
		{
			name: "server",
			cfg: tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile,
				CAFile: files.CAFile, Server: true},
			wantClientAuth: tls.VerifyClientCertIfGiven,
			wantCerts:      1,
			wantServerSide: true,
		},
		{
			name: "peer, accepting side",
			cfg: tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile,
				CAFile: files.CAFile, Server: true, Peer: true},
			wantClientAuth: tls.RequireAndVerifyClientCert,
			wantCerts:      1,
			wantServerSide: true,
		},
		{
			name: "peer, dialing side",
			cfg: tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile,
				CAFile: files.CAFile, Peer: true, ServerAddress: "127.0.0.1"},
			wantServerName: "127.0.0.1",
			wantCerts:      1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tlsconfig.SetupTLSConfig(tt.cfg)
			require.NoError(t, err)
			require.Equal(t, uint16(tls.VersionTLS12), got.MinVersion, "MinVersion")
			require.Len(t, got.Certificates, tt.wantCerts, "Certificates")
			require.Equal(t, tt.wantClientAuth, got.ClientAuth, "ClientAuth")
			require.Equal(t, tt.wantServerName, got.ServerName, "ServerName")
			if tt.wantServerSide {
				require.NotNil(t, got.ClientCAs, "ClientCAs")
				require.Nil(t, got.RootCAs, "RootCAs")
			} else {
				require.NotNil(t, got.RootCAs, "RootCAs")
				require.Nil(t, got.ClientCAs, "ClientCAs")
			}
		})
	}
}

// TestHandshake connects configs built by SetupTLSConfig to each other and
// checks who gets in, with the certificates `make gencert` writes plus some
// made here (another CA, an expired certificate).
func TestHandshake(t *testing.T) {
	files := tlsconfigtest.Files(t)
	otherCA := tlsconfigtest.NewCA(t, "other CA")
	otherCert, otherKey := otherCA.Issue(t, tlsconfigtest.CertOptions{CommonName: "root", Hosts: []string{"127.0.0.1", "localhost"}})
	// An expired certificate needs the real CA's key, which only make
	// gencert has: sign with a CA made here and trust that CA on the server.
	expiredCA := tlsconfigtest.NewCA(t, "expiring CA")
	expiredCert, expiredKey := expiredCA.Issue(t, tlsconfigtest.CertOptions{
		CommonName: "root",
		NotBefore:  time.Now().Add(-48 * time.Hour),
		NotAfter:   time.Now().Add(-24 * time.Hour),
	})
	freshCert, freshKey := expiredCA.Issue(t, tlsconfigtest.CertOptions{CommonName: "root"})

	server := tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile, Server: true}
	peerServer := server
	peerServer.Peer = true
	rootClient := tlsconfig.Config{CertFile: files.RootClientCertFile, KeyFile: files.RootClientKeyFile,
		CAFile: files.CAFile, ServerAddress: "127.0.0.1"}
	anonymousClient := tlsconfig.Config{CAFile: files.CAFile, ServerAddress: "localhost"}
	peerClient := tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile,
		CAFile: files.CAFile, ServerAddress: "127.0.0.1", Peer: true}
	with := func(cfg tlsconfig.Config, change func(*tlsconfig.Config)) tlsconfig.Config {
		change(&cfg)
		return cfg
	}
	serverTrustingExpiringCA := with(server, func(c *tlsconfig.Config) { c.CAFile = expiredCA.CertFile })

	tests := []struct {
		name        string
		server      tlsconfig.Config
		client      tlsconfig.Config
		clientTweak func(*tls.Config)
		wantOK      bool
		wantSubject string // Common Name of the verified client certificate, if any
	}{
		{name: "mTLS client", server: server, client: rootClient, wantOK: true, wantSubject: "root"},
		{name: "client without certificate (health probe)", server: server, client: anonymousClient, wantOK: true},
		{name: "peer to peer", server: peerServer, client: peerClient, wantOK: true, wantSubject: "127.0.0.1"},
		{name: "peer refuses client without certificate", server: peerServer, client: anonymousClient},
		// Go's client sends no certificate when the server's request names
		// other CAs: the connection is anonymous, and package auth refuses
		// its calls as unauthenticated.
		{name: "client certificate from another CA, withheld by the client", server: server,
			client: with(rootClient, func(c *tlsconfig.Config) { c.CertFile, c.KeyFile = otherCert, otherKey }),
			wantOK: true},
		{name: "client certificate from another CA, sent anyway", server: server,
			client:      with(rootClient, func(c *tlsconfig.Config) { c.CertFile, c.KeyFile = otherCert, otherKey }),
			clientTweak: sendCertificateAnyway},
		{name: "peer certificate from another CA", server: peerServer,
			client: with(peerClient, func(c *tlsconfig.Config) { c.CertFile, c.KeyFile = otherCert, otherKey })},
		{name: "client trusting another CA", server: server,
			client: with(rootClient, func(c *tlsconfig.Config) { c.CAFile = otherCA.CertFile })},
		{name: "expired client certificate", server: serverTrustingExpiringCA,
			client:      with(rootClient, func(c *tlsconfig.Config) { c.CertFile, c.KeyFile = expiredCert, expiredKey }),
			clientTweak: sendCertificateAnyway},
		{name: "valid certificate from the same CA as the expired one", server: serverTrustingExpiringCA,
			client: with(rootClient, func(c *tlsconfig.Config) { c.CertFile, c.KeyFile = freshCert, freshKey }),
			wantOK: true, wantSubject: "root"},
		{name: "server name not in the certificate", server: server,
			client: with(rootClient, func(c *tlsconfig.Config) { c.ServerAddress = "example.com:443" })},
		{name: "TLS 1.1 client", server: server, client: rootClient,
			clientTweak: func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }},
		{name: "TLS 1.2 client", server: server, client: rootClient,
			clientTweak: func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, wantOK: true, wantSubject: "root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverTLS, err := tlsconfig.SetupTLSConfig(tt.server)
			require.NoError(t, err)
			clientTLS, err := tlsconfig.SetupTLSConfig(tt.client)
			require.NoError(t, err)
			if tt.clientTweak != nil {
				tt.clientTweak(clientTLS)
			}
			state, err := handshake(t, serverTLS, clientTLS)
			if !tt.wantOK {
				require.Error(t, err, "handshake succeeded, want a failure")
				return
			}
			require.NoError(t, err)
			var subject string
			if len(state.VerifiedChains) > 0 && len(state.VerifiedChains[0]) > 0 {
				subject = state.VerifiedChains[0][0].Subject.CommonName
			}
			require.Equal(t, tt.wantSubject, subject, "verified client Common Name")
		})
	}
}

// sendCertificateAnyway makes a client present its first certificate even
// when it does not match what the server asked for, as a hostile client
// would.
func sendCertificateAnyway(c *tls.Config) {
	cert := c.Certificates[0]
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}

// handshake runs a TLS server on 127.0.0.1:0 for one connection and dials it
// with clientTLS. The server writes one byte after its handshake and the
// client reads it, because under TLS 1.3 a client's Handshake can return
// before the server has rejected the client's certificate. It returns the
// server's view of the connection and the first error of either side.
func handshake(t *testing.T, serverTLS, clientTLS *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })

	type result struct {
		state tls.ConnectionState
		err   error
	}
	served := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- result{err: err}
			return
		}
		defer conn.Close()
		tlsConn, ok := conn.(*tls.Conn)
		if !ok {
			served <- result{err: errors.New("accepted a non-TLS connection")}
			return
		}
		_ = tlsConn.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tlsConn.Handshake(); err != nil {
			served <- result{err: err}
			return
		}
		_, err = tlsConn.Write([]byte{1})
		served <- result{state: tlsConn.ConnectionState(), err: err}
	}()

	dialer := &net.Dialer{Timeout: 10 * time.Second}
	conn, dialErr := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), clientTLS)
	if dialErr == nil {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		// ReadFull, not Read: Read may return the byte together with io.EOF
		// when the server's close_notify arrived in the same read.
		_, dialErr = io.ReadFull(conn, make([]byte, 1))
		_ = conn.Close()
	}
	var res result
	select {
	case res = <-served:
	case <-time.After(15 * time.Second):
		t.Fatal("server side of the handshake did not finish")
	}
	return res.state, errors.Join(dialErr, res.err)
}

func TestConfigDir(t *testing.T) {
	t.Run("environment", func(t *testing.T) {
		t.Setenv(tlsconfig.ConfigDirEnv, "/some/dir")
		require.Equal(t, "/some/dir", tlsconfig.ConfigDir())
	})
	t.Run("home", func(t *testing.T) {
		t.Setenv(tlsconfig.ConfigDirEnv, "")
		home := t.TempDir()
		t.Setenv("HOME", home)
		require.Equal(t, filepath.Join(home, ".proglog"), tlsconfig.ConfigDir())
	})
}

func TestFileSetCheck(t *testing.T) {
	t.Run("complete", func(t *testing.T) {
		files := tlsconfigtest.Files(t)
		require.NoError(t, tlsconfig.Files(files.Dir).Check())
	})
	t.Run("missing", func(t *testing.T) {
		dir := t.TempDir()
		err := tlsconfig.Files(dir).Check()
		require.ErrorIs(t, err, tlsconfig.ErrMissingFiles)
		require.ErrorContains(t, err, "make gencert")
		require.ErrorContains(t, err, filepath.Join(dir, "ca.pem"))
	})
	t.Run("expired", func(t *testing.T) {
		dir := t.TempDir()
		src := tlsconfigtest.Files(t)
		set := tlsconfig.Files(dir)
		for from, to := range map[string]string{
			src.CAFile: set.CAFile, src.ServerCertFile: set.ServerCertFile, src.ServerKeyFile: set.ServerKeyFile,
			src.RootClientCertFile: set.RootClientCertFile, src.RootClientKeyFile: set.RootClientKeyFile,
			src.NobodyClientKeyFile: set.NobodyClientKeyFile,
			src.ACLModelFile:        set.ACLModelFile, src.ACLPolicyFile: set.ACLPolicyFile,
			src.GossipKeyFile: set.GossipKeyFile,
		} {
			data, err := os.ReadFile(from)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(to, data, 0o600))
		}
		ca := tlsconfigtest.NewCA(t, "expiring CA")
		expired, _ := ca.Issue(t, tlsconfigtest.CertOptions{
			CommonName: "nobody", NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		data, err := os.ReadFile(expired)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(set.NobodyClientCertFile, data, 0o600))

		err = set.Check()
		require.ErrorIs(t, err, tlsconfig.ErrMissingFiles)
		require.ErrorContains(t, err, set.NobodyClientCertFile+" expired")
	})
}
