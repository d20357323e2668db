package distlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"
)

// fileStableStore is Raft's StableStore (current term, vote) in one small
// JSON file, replaced atomically on every change: write a temporary file,
// fsync it, rename it over the old one, fsync the directory.
//
// Why not raft-boltdb v1: it is built on github.com/boltdb/bolt, whose
// unsafe pointer arithmetic aborts any binary built with -race
// ("checkptr: converted pointer straddles multiple allocations"), and v2
// (bbolt) conflicts with raft v1.8's metrics module. Raft writes this store
// only on term changes and votes, so a rewrite per Set costs nothing that
// matters, and a torn write cannot happen: a crash leaves the old file or
// the new one.
type fileStableStore struct {
	path string

	// mu guards values and serialises writes of the file.
	mu     sync.Mutex
	values map[string][]byte
}

var _ raft.StableStore = (*fileStableStore)(nil)

// newFileStableStore opens the store at path, creating it when missing.
func newFileStableStore(path string) (*fileStableStore, error) {
	s := &fileStableStore{path: path, values: make(map[string][]byte)}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("distlog: read stable store: %w", err)
	}
	if err := json.Unmarshal(b, &s.values); err != nil {
		return nil, fmt.Errorf("distlog: stable store %s is corrupt: %w", path, err)
	}
	return s, nil
}

// Set stores val under key durably before returning.
func (s *fileStableStore) Set(key []byte, val []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string][]byte, len(s.values)+1)
	for k, v := range s.values {
		next[k] = v
	}
	next[string(key)] = append([]byte(nil), val...)
	if err := s.writeLocked(next); err != nil {
		return err
	}
	s.values = next
	return nil
}

// Get returns the value under key, or an error "not found" as raft expects
// from a store that has never been written.
func (s *fileStableStore) Get(key []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[string(key)]
	if !ok {
		return nil, errors.New("not found")
	}
	return append([]byte(nil), v...), nil
}

// SetUint64 stores val under key.
func (s *fileStableStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, []byte(fmt.Sprint(val)))
}

// GetUint64 returns the value under key, 0 when it was never set (raft
// treats that as a fresh node).
func (s *fileStableStore) GetUint64(key []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[string(key)]
	if !ok {
		return 0, nil
	}
	var n uint64
	if _, err := fmt.Sscan(string(v), &n); err != nil {
		return 0, fmt.Errorf("distlog: stable store key %q: %w", key, err)
	}
	return n, nil
}

func (s *fileStableStore) writeLocked(values map[string][]byte) error {
	b, err := json.Marshal(values)
	if err != nil {
		return fmt.Errorf("distlog: encode stable store: %w", err)
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("distlog: write stable store: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("distlog: write stable store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("distlog: sync stable store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("distlog: close stable store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("distlog: replace stable store: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("distlog: sync stable store dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("distlog: sync stable store dir: %w", err)
	}
	return nil
}

// Close exists so the store closes like the others; the file is never held
// open between writes.
func (s *fileStableStore) Close() error { return nil }
