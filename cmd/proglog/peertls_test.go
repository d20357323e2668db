package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

// TestPeerTLSFlagsFormACluster: a cluster of `proglog agent` processes forms
// and replicates both with the default peer certificate (server.pem) and
// with the seed book's flags, which make the root client certificate the
// peer certificate: a node dials its Raft peers with it, while the Raft
// branch of the RPC port serves server.pem.
func TestPeerTLSFlagsFormACluster(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	tests := []struct {
		name  string
		flags []string
	}{
		{"defaults", nil},
		{"the book's flags", []string{
			"--peer-tls-cert-file", files.RootClientCertFile,
			"--peer-tls-key-file", files.RootClientKeyFile,
			"--peer-tls-ca-file", files.CAFile,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startClusterWith(t, 3, files, tt.flags...)
			r := c.mustRun(t, "", "produce", "peer", "tls")
			require.Equal(t, "0\n1\n", r.stdout)
			// Reads go to the followers: they have the records.
			for range 2 {
				r = c.mustRun(t, "", "consume")
				require.Equal(t, "peer\ntls\n", r.stdout)
			}
			for _, path := range c.logs {
				data, err := os.ReadFile(path)
				require.NoError(t, err)
				require.Falsef(t, strings.Contains(string(data), "raft peer handshake failed"),
					"%s reports a failed peer handshake", path)
			}
		})
	}
}
