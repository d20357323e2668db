package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/discovery"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

func TestKeygenPrintsAKey(t *testing.T) {
	clearProglogEnv(t)
	first := runInProcess(t, "", "keygen")
	require.Equal(t, exitOK, first.code, "stderr: %s", first.stderr)
	keys, err := discovery.ParseGossipKeys([]byte(first.stdout))
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Len(t, keys[0], discovery.GossipKeySize)
	second := runInProcess(t, "", "keygen")
	require.NotEqual(t, first.stdout, second.stdout, "two keys alike")
}

func TestKeygenWritesANewFileOnly(t *testing.T) {
	clearProglogEnv(t)
	path := filepath.Join(t.TempDir(), "gossip.key")
	r := runInProcess(t, "", "keygen", "--out", path)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.Empty(t, r.stdout, "the key went to stdout too")
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "mode of the key file")
	keys, err := discovery.ReadGossipKeyFile(path)
	require.NoError(t, err)
	require.Len(t, keys, 1)

	before, err := os.ReadFile(path)
	require.NoError(t, err)
	r = runInProcess(t, "", "keygen", "--out", path)
	require.Equal(t, exitError, r.code)
	requireOneLine(t, r, "exists; not replacing")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "the existing key file changed")
}

// TestAgentWithoutGossipKey: a node whose config dir has certificates but
// no gossip key says how to make one, or how to run without.
func TestAgentWithoutGossipKey(t *testing.T) {
	src := tlsconfigtest.Files(t).Dir // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	dir := t.TempDir()
	for _, name := range []string{"ca.pem", "server.pem", "server-key.pem", "model.conf", "policy.csv"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	r := runInProcess(t, "", "agent", "--config-dir", dir, "--data-dir", t.TempDir())
	require.Equal(t, exitError, r.code, "stderr: %s", r.stderr)
	requireOneLine(t, r, "gossip key: ")
	require.True(t, strings.Contains(r.stderr, "'make gencert'") && strings.Contains(r.stderr, "--gossip-insecure"),
		"stderr does not say how to fix it: %s", r.stderr)

	bad := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("not a key\n"), 0o600))
	r = runInProcess(t, "", "agent", "--config-dir", dir, "--data-dir", t.TempDir(), "--gossip-key-file", bad)
	require.Equal(t, exitError, r.code, "stderr: %s", r.stderr)
	requireOneLine(t, r, bad+": discovery: invalid gossip key: line 1 is not base64")
}
