package discovery

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// GossipKeySize is the size in bytes of the keys GenerateGossipKey makes:
// AES-256. memberlist also accepts 16 (AES-128) and 24 (AES-192) bytes.
const GossipKeySize = 32

// GenerateGossipKey returns a new random gossip key, base64-encoded, as a
// line of a key file (ReadGossipKeyFile) expects it.
func GenerateGossipKey() (string, error) {
	key := make([]byte, GossipKeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("discovery: generate gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

// ReadGossipKeyFile reads a gossip key file: one base64 key per line (as
// GenerateGossipKey and `serf keygen` print them), the first being the
// primary key, which encrypts; every key listed decrypts. Blank lines and
// lines starting with '#' are skipped. It fails with ErrInvalidGossipKey,
// naming the file and line, for a key that does not decode to 16, 24 or 32
// bytes, for a key listed twice, and for a file with no key.
func ReadGossipKeyFile(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("discovery: read gossip key file: %w", err)
	}
	keys, err := ParseGossipKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// ParseGossipKeys parses the contents of a gossip key file (see
// ReadGossipKeyFile).
func ParseGossipKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; scanner.Scan(); line++ {
		text := strings.TrimSpace(scanner.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d is not base64: %v", ErrInvalidGossipKey, line, err)
		}
		if err := checkGossipKey(key); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrInvalidGossipKey, line, err)
		}
		if slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) }) {
			return nil, fmt.Errorf("%w: line %d repeats an earlier key", ErrInvalidGossipKey, line)
		}
		keys = append(keys, key)
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidGossipKey, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key (generate one with 'proglog keygen')", ErrInvalidGossipKey)
	}
	return keys, nil
}

// checkGossipKey accepts the key sizes AES does.
func checkGossipKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	default:
		return fmt.Errorf("key of %d bytes, want 16, 24 or 32 (AES-128, -192 or -256)", len(key))
	}
}

// newKeyring builds memberlist's keyring from keys, keys[0] being the
// primary; nil keys mean no encryption (nil keyring).
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	// memberlist keeps the slices: give it copies the caller cannot change.
	owned := make([][]byte, len(keys))
	for i, k := range keys {
		owned[i] = bytes.Clone(k)
	}
	ring, err := memberlist.NewKeyring(owned, owned[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidGossipKey, err)
	}
	return ring, nil
}

// Encrypted reports whether this member's gossip is encrypted, that is
// whether it was started with Config.GossipKeys.
func (m *Membership) Encrypted() bool {
	return m.serf.EncryptionEnabled()
}

// GossipKeys returns the keys of this member's keyring, the primary first;
// nil when gossip is not encrypted. The caller owns the slices.
func (m *Membership) GossipKeys() [][]byte {
	ring := m.keyring()
	if ring == nil {
		return nil
	}
	keys := ring.GetKeys()
	// GetKeys returns the keyring's own slices: copy them.
	owned := make([][]byte, len(keys))
	for i, k := range keys {
		owned[i] = bytes.Clone(k)
	}
	return owned
}

// SetGossipKeys makes this member's keyring hold exactly keys, keys[0]
// being the primary: keys not yet installed are installed, the primary is
// switched to keys[0], and installed keys no longer listed are removed, in
// that order, so that at no point this member lacks a key it needs. It
// changes this member only: rotating a cluster's key is done member by
// member in three rounds (see the package documentation). It fails with
// ErrNotEncrypted when the member was started without keys (memberlist
// cannot turn encryption on in a running member) and with
// ErrInvalidGossipKey for an empty list or a bad key, leaving the keyring
// as it was.
func (m *Membership) SetGossipKeys(keys [][]byte) error {
	ring := m.keyring()
	if ring == nil {
		return ErrNotEncrypted
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: no key", ErrInvalidGossipKey)
	}
	for i, k := range keys {
		if err := checkGossipKey(k); err != nil {
			return fmt.Errorf("%w: key %d: %v", ErrInvalidGossipKey, i, err)
		}
	}
	installed := ring.GetKeys()
	has := func(list [][]byte, key []byte) bool {
		return slices.ContainsFunc(list, func(k []byte) bool { return bytes.Equal(k, key) })
	}
	var added, removed int
	for _, k := range keys {
		if !has(installed, k) {
			if err := ring.AddKey(bytes.Clone(k)); err != nil {
				return fmt.Errorf("discovery: install gossip key: %w", err)
			}
			added++
		}
	}
	primaryChanged := !bytes.Equal(ring.GetPrimaryKey(), keys[0])
	if primaryChanged {
		if err := ring.UseKey(keys[0]); err != nil {
			return fmt.Errorf("discovery: use gossip key: %w", err)
		}
	}
	for _, k := range installed {
		if !has(keys, k) {
			if err := ring.RemoveKey(k); err != nil {
				return fmt.Errorf("discovery: remove gossip key: %w", err)
			}
			removed++
		}
	}
	m.logger.Info("gossip keyring changed",
		zap.Int("installed", added), zap.Bool("primary_changed", primaryChanged),
		zap.Int("removed", removed), zap.Int("keys", len(keys)))
	return nil
}

// keyring is memberlist's keyring, nil without encryption.
func (m *Membership) keyring() *memberlist.Keyring {
	if !m.serf.EncryptionEnabled() {
		return nil
	}
	return m.serfKeyring
}
