package discovery

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/serf/serf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newKey returns a fresh gossip key, decoded.
func newKey(t *testing.T) []byte {
	t.Helper()
	encoded, err := GenerateGossipKey()
	require.NoError(t, err)
	key, err := base64.StdEncoding.DecodeString(encoded)
	require.NoError(t, err)
	require.Len(t, key, GossipKeySize)
	return key
}

// startKeyed starts member name with the given keyring, joined through
// joinAddrs.
func startKeyed(t *testing.T, name string, h Handler, keys [][]byte, joinAddrs ...string) *Membership {
	t.Helper()
	cfg := testConfig(t, name, joinAddrs...)
	cfg.GossipKeys = keys
	m, err := New(h, cfg)
	require.NoError(t, err, "New(%s)", name)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// tryJoin starts member name with keys and returns New's error; a member
// that did start is closed at once.
func tryJoin(t *testing.T, name string, keys [][]byte, joinAddr string) error {
	t.Helper()
	cfg := testConfig(t, name, joinAddr)
	cfg.GossipKeys = keys
	m, err := New(&recordingHandler{}, cfg)
	if err == nil {
		require.NoError(t, m.Close())
	}
	return err
}

func TestGossipEncryptionKeepsOutsidersOut(t *testing.T) {
	key := newKey(t)
	h1 := &recordingHandler{}
	n1 := startKeyed(t, "n1", h1, [][]byte{key})
	require.True(t, n1.Encrypted())

	// A member with the key joins.
	startKeyed(t, "n2", &recordingHandler{}, [][]byte{key}, n1.Addr())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, h1.Joined(), "n2")
	}, waitFor, tick)

	// One with another key, and one without encryption, do not.
	err := tryJoin(t, "n3", [][]byte{newKey(t)}, n1.Addr())
	require.ErrorIs(t, err, ErrJoin, "join with a wrong key")
	require.ErrorContains(t, err, "gossip keys differ")
	err = tryJoin(t, "n4", nil, n1.Addr())
	require.ErrorIs(t, err, ErrJoin, "join without encryption")
	require.ErrorContains(t, err, "gossip keys differ")

	require.Empty(t, h1.NamedIn("n3"), "n1 reported the member with the wrong key")
	require.Empty(t, h1.NamedIn("n4"), "n1 reported the plaintext member")
	require.Equal(t, serf.StatusNone, statusOf(n1, "n3"))
	require.Equal(t, serf.StatusNone, statusOf(n1, "n4"))
}

func TestPlaintextClusterRefusesEncryptedMember(t *testing.T) {
	n1 := startMember(t, "n1", &recordingHandler{})
	require.False(t, n1.Encrypted())
	require.Nil(t, n1.GossipKeys())
	err := tryJoin(t, "n2", [][]byte{newKey(t)}, n1.Addr())
	require.ErrorIs(t, err, ErrJoin)
	require.ErrorContains(t, err, "gossip keys differ")
	require.ErrorIs(t, n1.SetGossipKeys([][]byte{newKey(t)}), ErrNotEncrypted)
}

// TestGossipKeyRotation rotates a running cluster's key the documented way,
// in three rounds applied to every member: install the new key, make it
// primary, remove the old one. The members keep seeing each other
// throughout, and afterwards only the new key lets a member in.
func TestGossipKeyRotation(t *testing.T) {
	oldKey, newKey := newKey(t), newKey(t)
	h1, h2 := &recordingHandler{}, &recordingHandler{}
	n1 := startKeyed(t, "n1", h1, [][]byte{oldKey})
	n2 := startKeyed(t, "n2", h2, [][]byte{oldKey}, n1.Addr())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, h1.Joined(), "n2")
	}, waitFor, tick)

	rounds := [][][]byte{
		{oldKey, newKey}, // install
		{newKey, oldKey}, // use
		{newKey},         // remove
	}
	for i, keys := range rounds {
		for _, m := range []*Membership{n1, n2} {
			require.NoError(t, m.SetGossipKeys(keys), "round %d", i)
			require.Equal(t, keys, m.GossipKeys(), "round %d: GossipKeys()", i)
		}
		// A member that only holds the old key can join while it is the
		// primary: once the members encrypt with the new key, it cannot
		// read their answers.
		err := tryJoin(t, fmt.Sprintf("old%d", i), [][]byte{oldKey}, n1.Addr())
		if i == 0 {
			require.NoError(t, err, "round %d: join with the old key", i)
		} else {
			require.ErrorIs(t, err, ErrJoin, "round %d: join with the old key only", i)
		}
	}
	// Gossip still flows between the rotated members: a new member with
	// the new key joins through n1 and n2 hears of it.
	startKeyed(t, "n3", &recordingHandler{}, [][]byte{newKey}, n1.Addr())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, h2.Joined(), "n3")
		assert.Equal(c, serf.StatusAlive, statusOf(n2, "n1"))
	}, waitFor, tick)
	require.False(t, h1.Left("n2"), "n1 lost n2 during the rotation")
}

func TestSetGossipKeysRefusesBadKeys(t *testing.T) {
	key := newKey(t)
	m := startKeyed(t, "n1", &recordingHandler{}, [][]byte{key})
	for name, keys := range map[string][][]byte{
		"empty":     nil,
		"too short": {[]byte("short")},
		"one bad":   {key, make([]byte, 20)},
	} {
		err := m.SetGossipKeys(keys)
		require.ErrorIs(t, err, ErrInvalidGossipKey, name)
		require.Equal(t, [][]byte{key}, m.GossipKeys(), "%s: keyring changed", name)
	}
}

func TestNewRefusesBadGossipKeys(t *testing.T) {
	key := newKey(t)
	for name, keys := range map[string][][]byte{
		"wrong size": {make([]byte, 31)},
		"repeated":   {key, bytes.Clone(key)},
	} {
		cfg := testConfig(t, "n1")
		cfg.GossipKeys = keys
		_, err := New(&recordingHandler{}, cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		require.NotContains(t, err.Error(), base64.StdEncoding.EncodeToString(key), "%s: error shows the key", name)
	}
}

func TestParseGossipKeys(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 16))
	tests := []struct {
		name    string
		file    string
		want    int    // keys, when no error
		wantErr string // part of the error
	}{
		{name: "one key", file: k1 + "\n", want: 1},
		{name: "no trailing newline", file: k1, want: 1},
		{name: "comments and blanks", file: "# primary first\n\n" + k1 + "\n  " + k2 + "  \n", want: 2},
		{name: "empty", file: "", wantErr: "no key"},
		{name: "only comments", file: "# nothing\n", wantErr: "no key"},
		{name: "not base64", file: k1 + "\nnot-base64!\n", wantErr: "line 2 is not base64"},
		{name: "wrong size", file: base64.StdEncoding.EncodeToString([]byte("short")), wantErr: "line 1: key of 5 bytes"},
		{name: "repeated", file: k1 + "\n" + k1 + "\n", wantErr: "line 2 repeats"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParseGossipKeys([]byte(tt.file))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrInvalidGossipKey)
				require.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Len(t, keys, tt.want)
		})
	}
}

func TestReadGossipKeyFile(t *testing.T) {
	dir := t.TempDir()
	encoded, err := GenerateGossipKey()
	require.NoError(t, err)
	path := filepath.Join(dir, "gossip.key")
	require.NoError(t, os.WriteFile(path, []byte(encoded+"\n"), 0o600))
	keys, err := ReadGossipKeyFile(path)
	require.NoError(t, err)
	require.Equal(t, encoded, base64.StdEncoding.EncodeToString(keys[0]))

	_, err = ReadGossipKeyFile(filepath.Join(dir, "missing"))
	require.True(t, errors.Is(err, os.ErrNotExist), "missing file: %v", err)

	bad := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("xx\n"), 0o600))
	_, err = ReadGossipKeyFile(bad)
	require.ErrorIs(t, err, ErrInvalidGossipKey)
	require.True(t, strings.HasPrefix(err.Error(), bad+": "), "error names the file: %v", err)
}

func TestRemoveForgetsARunningMember(t *testing.T) {
	key := [][]byte{newKey(t)}
	h1, h2 := &recordingHandler{}, &recordingHandler{}
	n1 := startKeyed(t, "n1", h1, key)
	n2 := startKeyed(t, "n2", h2, key, n1.Addr())
	startKeyed(t, "n3", &recordingHandler{}, key, n1.Addr())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, h1.Joined(), "n3")
		assert.Contains(c, h2.Joined(), "n3")
	}, waitFor, tick)

	require.NoError(t, n1.Remove("n3"))
	require.NoError(t, n1.Remove("nobody"), "Remove of an unknown member")
	require.NoError(t, n1.Remove("n1"), "Remove of the local member")
	// The caller forgets the member for sure; others may hear n3's
	// refutation first and keep it (see Remove).
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, serf.StatusNone, statusOf(n1, "n3"), "n1 still lists n3")
		assert.True(c, h1.Left("n3"), "n1: Leave(n3) not called")
	}, waitFor, tick)
	require.Equal(t, serf.StatusAlive, statusOf(n1, "n2"), "n2 was removed too")
	require.Equal(t, serf.StatusAlive, statusOf(n2, "n1"), "n2 lost n1")
}
