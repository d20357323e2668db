package tlsconfig

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ConfigDirEnv is the environment variable naming the directory `make
// gencert` writes to; `make test` exports it.
const ConfigDirEnv = "PROGLOG_CONFIG_DIR"

// ErrMissingFiles is wrapped by FileSet.Check when a file is absent,
// unreadable or expired.
var ErrMissingFiles = errors.New("tlsconfig: certificates or ACL files missing")

// ConfigDir returns the directory holding the certificates and ACL files:
// $PROGLOG_CONFIG_DIR when set, else $HOME/.proglog (the Makefile's default
// CONFIG_DIR), else ".proglog" when no home directory is known.
func ConfigDir() string {
	if dir := os.Getenv(ConfigDirEnv); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".proglog"
	}
	return filepath.Join(home, ".proglog")
}

// FileSet names every file `make gencert` writes into one directory.
type FileSet struct {
	// Dir is the directory the paths below are in.
	Dir string
	// CAFile is the certificate authority that signed every certificate.
	CAFile string
	// ServerCertFile and ServerKeyFile: the node's certificate, valid for
	// localhost and 127.0.0.1, for both server and client auth (so it also
	// serves as the Raft peer certificate).
	ServerCertFile, ServerKeyFile string
	// RootClientCertFile and RootClientKeyFile: a client with Common Name
	// "root", which the default policy lets produce and consume.
	RootClientCertFile, RootClientKeyFile string
	// NobodyClientCertFile and NobodyClientKeyFile: a client with Common
	// Name "nobody", which the default policy allows nothing.
	NobodyClientCertFile, NobodyClientKeyFile string
	// ACLModelFile and ACLPolicyFile: the Casbin model and policy.
	ACLModelFile, ACLPolicyFile string
	// GossipKeyFile: the key that encrypts the nodes' Serf gossip, base64,
	// one key per line (see discovery.ReadGossipKeyFile).
	GossipKeyFile string
}

// Files returns the paths of the files `make gencert` writes into dir. It
// does not look at the file system; Check does.
func Files(dir string) FileSet {
	join := func(name string) string { return filepath.Join(dir, name) }
	return FileSet{
		Dir:                  dir,
		CAFile:               join("ca.pem"),
		ServerCertFile:       join("server.pem"),
		ServerKeyFile:        join("server-key.pem"),
		RootClientCertFile:   join("root-client.pem"),
		RootClientKeyFile:    join("root-client-key.pem"),
		NobodyClientCertFile: join("nobody-client.pem"),
		NobodyClientKeyFile:  join("nobody-client-key.pem"),
		ACLModelFile:         join("model.conf"),
		ACLPolicyFile:        join("policy.csv"),
		GossipKeyFile:        join("gossip.key"),
	}
}

// Check reports, in one error wrapping ErrMissingFiles, every file of the
// set that is missing or empty and every certificate that has expired, with
// the command that fixes it.
func (f FileSet) Check() error {
	var problems []error
	for _, path := range []string{
		f.CAFile, f.ServerCertFile, f.ServerKeyFile,
		f.RootClientCertFile, f.RootClientKeyFile,
		f.NobodyClientCertFile, f.NobodyClientKeyFile,
		f.ACLModelFile, f.ACLPolicyFile, f.GossipKeyFile,
	} {
		info, err := os.Stat(path)
		switch {
		case err != nil:
			problems = append(problems, err)
		case info.Size() == 0:
			problems = append(problems, fmt.Errorf("%s is empty", path))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w in %s (run `make gencert`, or set %s): %w",
			ErrMissingFiles, f.Dir, ConfigDirEnv, errors.Join(problems...))
	}
	now := time.Now()
	for _, path := range []string{f.CAFile, f.ServerCertFile, f.RootClientCertFile, f.NobodyClientCertFile} {
		notAfter, err := certificateNotAfter(path)
		switch {
		case err != nil:
			problems = append(problems, err)
		case now.After(notAfter):
			problems = append(problems, fmt.Errorf("%s expired on %s", path, notAfter.Format(time.RFC3339)))
		}
	}
	if len(problems) > 0 {
		// make gencert keeps existing files, so stale ones must go first.
		return fmt.Errorf("%w in %s (delete the certificates and run `make gencert`): %w",
			ErrMissingFiles, f.Dir, errors.Join(problems...))
	}
	return nil
}

// certificateNotAfter returns the expiry of the first certificate in a PEM
// file.
func certificateNotAfter(path string) (time.Time, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return time.Time{}, fmt.Errorf("%s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return cert.NotAfter, nil
}
