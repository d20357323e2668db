package agent

import (
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/proglog/proglog/distlog"
)

// maxHandshakeReasons bounds how many failing peers /readyz names.
const maxHandshakeReasons = 3

// peerHandshakes follows the TLS handshakes of Raft's connections: it warns
// once per peer when a handshake with it fails, saying which certificate
// files are in play and what verification said, and keeps the reason for
// /readyz until a handshake with that peer succeeds. Raft alone would only
// log its failed RPCs, over and over, without the cause.
type peerHandshakes struct {
	logger *zap.Logger
	files  PeerTLSFiles

	// mu guards failing: the reason of each peer whose last handshake
	// failed, by peerKey.
	mu      sync.Mutex
	failing map[string]string
}

func newPeerHandshakes(logger *zap.Logger, files PeerTLSFiles) *peerHandshakes {
	return &peerHandshakes{logger: logger, files: files, failing: map[string]string{}}
}

// observe is the StreamLayer's handshake observer.
func (p *peerHandshakes) observe(r distlog.HandshakeResult) {
	key := peerKey(r)
	if r.Err == nil {
		p.mu.Lock()
		_, wasFailing := p.failing[key]
		delete(p.failing, key)
		p.mu.Unlock()
		if wasFailing {
			p.logger.Info("raft peer handshake succeeded again", zap.String("peer", key))
		}
		return
	}
	reason := p.reason(key, r)
	p.mu.Lock()
	_, seen := p.failing[key]
	p.failing[key] = reason
	p.mu.Unlock()
	if seen {
		return
	}
	fields := []zap.Field{
		zap.String("peer", key),
		zap.Bool("dialing", r.Dialing),
		zap.Error(r.Err),
	}
	addFile := func(key, path string) {
		if path != "" {
			fields = append(fields, zap.String(key, path))
		}
	}
	if r.Dialing {
		addFile("peer_tls_cert_file", p.files.CertFile)
	} else {
		addFile("server_tls_cert_file", p.files.ServerCertFile)
	}
	addFile("peer_tls_ca_file", p.files.CAFile)
	if r.Certificate != nil {
		fields = append(fields, zap.String("presented_certificate", describeCertificate(r.Certificate)))
	}
	p.logger.Warn("raft peer handshake failed; the nodes cannot replicate until it succeeds", fields...)
}

// reason is the one-line explanation /readyz gives for a failed handshake.
func (p *peerHandshakes) reason(key string, r distlog.HandshakeResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tls handshake %s failed: %v", key, r.Err)
	if r.Dialing {
		fmt.Fprintf(&b, " (this node dials with %s and verifies peers with %s", orUnknown(p.files.CertFile), orUnknown(p.files.CAFile))
	} else {
		fmt.Fprintf(&b, " (this node serves raft with %s and verifies peers with %s", orUnknown(p.files.ServerCertFile), orUnknown(p.files.CAFile))
	}
	if r.Certificate != nil {
		fmt.Fprintf(&b, "; the peer presented %s", describeCertificate(r.Certificate))
	}
	b.WriteString(")")
	return b.String()
}

// failures returns the reasons of the peers whose handshakes fail, sorted,
// at most maxHandshakeReasons of them, joined; "" when none fails.
func (p *peerHandshakes) failures() string {
	p.mu.Lock()
	reasons := make([]string, 0, len(p.failing))
	for _, reason := range p.failing {
		reasons = append(reasons, reason)
	}
	p.mu.Unlock()
	if len(reasons) == 0 {
		return ""
	}
	slices.Sort(reasons)
	more := len(reasons) - maxHandshakeReasons
	if more > 0 {
		reasons = append(reasons[:maxHandshakeReasons], fmt.Sprintf("and %d more", more))
	}
	return strings.Join(reasons, "; ")
}

// peerKey names the peer of a handshake: the address dialed, or for an
// accepted connection (whose port is ephemeral) the remote host and the
// subject of the certificate it presented.
func peerKey(r distlog.HandshakeResult) string {
	if r.Dialing {
		return "with raft peer " + r.Peer
	}
	host, _, err := net.SplitHostPort(r.Peer)
	if err != nil {
		host = r.Peer
	}
	key := "from raft peer at " + host
	if r.Certificate != nil {
		key += " presenting CN=" + r.Certificate.Subject.CommonName
	}
	return key
}

// describeCertificate names a certificate's subject, issuer and the names it
// is valid for: what a verification error is usually about.
func describeCertificate(c *x509.Certificate) string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	sans := "no DNS or IP SANs"
	if len(names) > 0 {
		sans = "SANs " + strings.Join(names, ", ")
	}
	return fmt.Sprintf("CN=%s issued by CN=%s, %s", c.Subject.CommonName, c.Issuer.CommonName, sans)
}

func orUnknown(path string) string {
	if path == "" {
		return "(certificate file not named in agent.Config.PeerTLSFiles)"
	}
	return path
}
