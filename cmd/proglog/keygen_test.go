package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/discovery"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
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

// TestAgentReloadsGossipKeysOnSIGHUP: SIGHUP applies the key file to the
// running node's keyring (one round of a rotation), and a broken file leaves
// the keyring as it was, saying why.
func TestAgentReloadsGossipKeysOnSIGHUP(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gossip.key")
	oldKey, err := discovery.GenerateGossipKey()
	require.NoError(t, err)
	newKey, err := discovery.GenerateGossipKey()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, []byte(oldKey+"\n"), 0o600))

	ports := testnet.FreePorts(t, 3)
	p := startProcess(t, proglogBinary(t), "", "agent",
		"--node-name", "node-1", "--data-dir", filepath.Join(dir, "data"), "--bootstrap",
		"--bind-addr", "127.0.0.1:"+strconv.Itoa(ports[0]),
		"--rpc-port", strconv.Itoa(ports[1]), "--http-port", strconv.Itoa(ports[2]),
		"--config-dir", files.Dir, "--gossip-key-file", keyFile, "--log-level", "info")
	waitForLog := func(what string, count int) {
		t.Helper()
		require.Eventually(t, func() bool {
			return strings.Count(p.stderr.String(), what) >= count
		}, 30*time.Second, 20*time.Millisecond, "no %q in the log:\n%s", what, p.stderr)
	}
	waitForLog(`"msg":"agent started"`, 1)

	// Install the new key beside the old one.
	require.NoError(t, os.WriteFile(keyFile, []byte(oldKey+"\n"+newKey+"\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	waitForLog(`"msg":"SIGHUP: gossip keys reloaded"`, 1)
	require.Contains(t, p.stderr.String(), `"installed":1`)

	// A broken file changes nothing.
	require.NoError(t, os.WriteFile(keyFile, []byte("not a key\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	waitForLog(`"msg":"SIGHUP: gossip keys not reloaded; the keyring is unchanged"`, 1)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, exitOK, p.wait(t, 30*time.Second), "stderr: %s", p.stderr)
}
