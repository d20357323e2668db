// Package tlsconfigtest gives tests the certificates and ACL files `make
// gencert` writes, failing the test with instructions when they are missing.
package tlsconfigtest

import (
	"testing"

	"github.com/proglog/proglog/server/tlsconfig"
)

// Files returns the file set in tlsconfig.ConfigDir() ($PROGLOG_CONFIG_DIR,
// else $HOME/.proglog), and fails t when a file is missing or a certificate
// has expired, saying to run `make gencert`.
func Files(t testing.TB) tlsconfig.FileSet {
	t.Helper()
	return FilesIn(t, tlsconfig.ConfigDir())
}

// FilesIn is Files for an explicit directory.
func FilesIn(t testing.TB, dir string) tlsconfig.FileSet {
	t.Helper()
	files := tlsconfig.Files(dir)
	if err := files.Check(); err != nil {
		t.Fatalf("%v", err)
	}
	return files
}
