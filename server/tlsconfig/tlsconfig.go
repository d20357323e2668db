package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// MinVersion is the oldest TLS version any proglog endpoint accepts.
const MinVersion = tls.VersionTLS12

// ErrInvalidConfig is wrapped by every error SetupTLSConfig returns for a
// Config that cannot describe a usable connection.
var ErrInvalidConfig = errors.New("tlsconfig: invalid config")

// Config names the PEM files of one side of a connection and the role that
// side plays. The zero value is a client that verifies servers against the
// system roots and presents no certificate.
type Config struct {
	// CertFile is the PEM certificate this side presents. Required for a
	// server and for a peer; optional for a client (without it the client
	// does not authenticate itself). Default: none.
	CertFile string
	// KeyFile is the PEM private key of CertFile. Required exactly when
	// CertFile is set.
	KeyFile string
	// CAFile is the PEM bundle of certificate authorities that verify the
	// other side: the server for a client, client certificates for a server.
	// Required for a server and for a peer. Default for a client: the
	// system's roots.
	CAFile string
	// ServerAddress is the name the client expects in the server's
	// certificate (tls.Config.ServerName), e.g. "127.0.0.1" or
	// "localhost"; a "host:port" is accepted and its port dropped. Ignored
	// on the accepting side. Default: the host the client dials (set by
	// the dialer, e.g. grpc).
	ServerAddress string
	// Server makes this the accepting side of the connection.
	Server bool
	// Peer marks a connection between nodes (Raft): both sides must present
	// a certificate signed by CAFile. On the accepting side this is
	// tls.RequireAndVerifyClientCert instead of tls.VerifyClientCertIfGiven.
	Peer bool
}

// validate reports the first field that makes cfg unusable.
func (cfg Config) validate() error {
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return fmt.Errorf("%w: CertFile %q and KeyFile %q must be set together", ErrInvalidConfig, cfg.CertFile, cfg.KeyFile)
	}
	if (cfg.Server || cfg.Peer) && cfg.CertFile == "" {
		return fmt.Errorf("%w: CertFile is required for a server or a peer", ErrInvalidConfig)
	}
	if (cfg.Server || cfg.Peer) && cfg.CAFile == "" {
		// Without a CA a server could not verify any client certificate and
		// every call would be unauthenticated; a peer could not verify the
		// other node.
		return fmt.Errorf("%w: CAFile is required for a server or a peer", ErrInvalidConfig)
	}
	return nil
}

// SetupTLSConfig builds the *tls.Config described by cfg: see the package
// documentation for the shapes. Files are read once, now.
func SetupTLSConfig(cfg Config) (*tls.Config, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tlsConfig := &tls.Config{MinVersion: MinVersion}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tlsconfig: load key pair %s, %s: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	var pool *x509.CertPool
	if cfg.CAFile != "" {
		var err error
		if pool, err = loadCertPool(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	if cfg.Server {
		tlsConfig.ClientCAs = pool
		tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
		if cfg.Peer {
			tlsConfig.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return tlsConfig, nil
	}
	tlsConfig.RootCAs = pool // nil: the system roots.
	tlsConfig.ServerName = serverName(cfg.ServerAddress)
	return tlsConfig, nil
}

// loadCertPool reads a PEM bundle of CA certificates.
func loadCertPool(file string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%w: CAFile %s holds no PEM certificate", ErrInvalidConfig, file)
	}
	return pool, nil
}

// serverName drops the port of a "host:port" address, so that callers can
// pass the address they dial.
func serverName(address string) string {
	if host, _, err := net.SplitHostPort(address); err == nil {
		return host
	}
	return address
}
