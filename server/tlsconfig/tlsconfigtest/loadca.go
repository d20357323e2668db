package tlsconfigtest

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
)

// LoadCA returns the CA whose certificate and EC private key are in the PEM
// files certFile and keyFile — `make gencert`'s ca.pem and ca-key.pem — so
// that a test can issue certificates the cluster trusts but `make gencert`
// does not make (a client-only certificate for a host, a server certificate
// for another subject). Issue writes them into a t.TempDir().
func LoadCA(t testing.TB, certFile, keyFile string) *CA {
	t.Helper()
	cert, err := x509.ParseCertificate(readPEM(t, certFile, "CERTIFICATE"))
	if err != nil {
		t.Fatalf("parse %s: %v", certFile, err)
	}
	keyDER := readPEM(t, keyFile, "EC PRIVATE KEY")
	key, err := x509.ParseECPrivateKey(keyDER)
	if err != nil {
		parsed, pkcs8Err := x509.ParsePKCS8PrivateKey(keyDER)
		ecKey, ok := parsed.(*ecdsa.PrivateKey)
		if pkcs8Err != nil || !ok {
			t.Fatalf("parse %s: not an EC private key: %v", keyFile, err)
		}
		key = ecKey
	}
	return &CA{cert: cert, key: key, dir: t.TempDir(), CertFile: certFile}
}

// readPEM returns the bytes of the first PEM block in path, which must be
// of type want ("EC PRIVATE KEY" also accepts "PRIVATE KEY").
func readPEM(t testing.TB, path, want string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || (block.Type != want && !(want == "EC PRIVATE KEY" && block.Type == "PRIVATE KEY")) {
		t.Fatalf("%s holds no PEM %s", path, want)
	}
	return block.Bytes
}
