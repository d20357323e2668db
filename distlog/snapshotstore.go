package distlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/proglog/proglog/distlog/storage"
	"go.uber.org/zap"
)

// SnapshotStore is Raft's snapshot store for the distlog state machine. A
// snapshot the node takes itself copies no record: the state machine's
// capture (see fsm.Snapshot) is hard links, to each topic's sealed segments
// in a pool shared by the snapshots (each sealed segment is linked once)
// and to its active segment, and the snapshot's stream is produced from
// them only when it is read: by Raft to send a follower an InstallSnapshot,
// or to restore at start. A snapshot received from a leader (or written by
// any other FSMSnapshot) is kept as the stream it is.
//
// On disk, under its directory:
//
//	pool/<topic id>-<epoch>/   links to sealed segments (storage.Log.Epoch)
//	.staging/                  captures not yet taken by a snapshot (emptied at open)
//	<id>.tmp/                  a snapshot being written (removed at open)
//	<id>/meta.json             raft.SnapshotMeta, and the stream's parts (linked form)
//	<id>/links/<topic id>/     linked form: the active segments' links
//	<id>/stream                stream form: the stream
//
// id is term-index-milliseconds, as raft.FileSnapshotStore names them.
// Pool directories no kept snapshot and no capture in flight uses are
// removed when a snapshot is closed.
type SnapshotStore struct {
	dir    string
	retain int
	logger *zap.Logger
	// mu serialises reaping with captures' holds on pool directories.
	mu sync.Mutex
	// held counts the captures in flight using each pool directory.
	// Guarded by mu.
	held map[string]int
}

var _ raft.SnapshotStore = (*SnapshotStore)(nil)

const (
	snapshotPoolDir     = "pool"
	snapshotStagingDir  = ".staging"
	snapshotTmpSuffix   = ".tmp"
	snapshotMetaFile    = "meta.json"
	snapshotLinksDir    = "links"
	snapshotStreamFile  = "stream"
	snapshotMetaVersion = 2
)

// snapshotMetaFileContent is meta.json.
type snapshotMetaFileContent struct {
	// Layout is the version of this file and the snapshot directory.
	Layout int
	raft.SnapshotMeta
	// Parts, when set, make up the stream from the links (linked form);
	// otherwise the stream is the file "stream".
	Parts []snapshotPart `json:",omitempty"`
}

// NewSnapshotStore opens (or creates) the store in dir, keeping the
// newest retain snapshots (at least 1).
func NewSnapshotStore(dir string, retain int, logger *zap.Logger) (*SnapshotStore, error) {
	if retain < 1 {
		return nil, fmt.Errorf("%w: snapshot retain = %d, must be at least 1", ErrInvalidConfig, retain)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &SnapshotStore{dir: dir, retain: retain, logger: logger, held: map[string]int{}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("distlog: snapshot store: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("distlog: snapshot store: %w", err)
	}
	for _, e := range entries {
		if e.Name() == snapshotStagingDir || strings.HasSuffix(e.Name(), snapshotTmpSuffix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("distlog: snapshot store: %w", err)
			}
		}
	}
	for _, d := range []string{s.stagingDir(), s.poolRoot()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("distlog: snapshot store: %w", err)
		}
	}
	return s, nil
}

// poolRoot is the directory of the pool directories.
func (s *SnapshotStore) poolRoot() string { return filepath.Join(s.dir, snapshotPoolDir) }

// makePoolDir returns the pool directory name, created (durably) if need
// be.
func (s *SnapshotStore) makePoolDir(name string) (string, error) {
	dir := filepath.Join(s.poolRoot(), name)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("distlog: snapshot store: %w", err)
	}
	return dir, storage.SyncDir(s.poolRoot())
}

// hold keeps the pool directories from being reaped until the returned
// function is called.
func (s *SnapshotStore) hold(pools []string) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pools {
		s.held[p]++
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range pools {
			if s.held[p]--; s.held[p] <= 0 {
				delete(s.held, p)
			}
		}
	}
}

// stagingDir is where the state machine makes its captures (on the store's
// file system, so that a sink can take them over with a rename).
func (s *SnapshotStore) stagingDir() string { return filepath.Join(s.dir, snapshotStagingDir) }

// Create implements raft.SnapshotStore.
func (s *SnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("distlog: snapshot store: unsupported snapshot version %d", version)
	}
	id := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	tmp := filepath.Join(s.dir, id+snapshotTmpSuffix)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("distlog: snapshot store: %w", err)
	}
	return &snapshotSink{store: s, tmp: tmp, meta: snapshotMetaFileContent{
		Layout: snapshotMetaVersion,
		SnapshotMeta: raft.SnapshotMeta{
			Version: version, ID: id, Index: index, Term: term,
			Configuration: configuration, ConfigurationIndex: configurationIndex,
		},
	}}, nil
}

// List implements raft.SnapshotStore: the snapshots, newest first.
func (s *SnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.list()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, len(metas))
	for k := range metas {
		out[k] = &metas[k].SnapshotMeta
	}
	return out, nil
}

func (s *SnapshotStore) list() ([]snapshotMetaFileContent, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("distlog: snapshot store: %w", err)
	}
	var metas []snapshotMetaFileContent
	for _, e := range entries {
		if !e.IsDir() || e.Name() == snapshotStagingDir || e.Name() == snapshotPoolDir || strings.HasSuffix(e.Name(), snapshotTmpSuffix) {
			continue
		}
		meta, err := s.readMeta(e.Name())
		if err != nil {
			s.logger.Warn("ignoring an unreadable snapshot", zap.String("id", e.Name()), zap.Error(err))
			continue
		}
		metas = append(metas, meta)
	}
	slices.SortFunc(metas, func(a, b snapshotMetaFileContent) int {
		switch {
		case a.Term != b.Term:
			return cmpDesc(a.Term, b.Term)
		case a.Index != b.Index:
			return cmpDesc(a.Index, b.Index)
		default:
			return strings.Compare(b.ID, a.ID)
		}
	})
	return metas, nil
}

func cmpDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	return 1
}

func (s *SnapshotStore) readMeta(id string) (snapshotMetaFileContent, error) {
	var meta snapshotMetaFileContent
	b, err := os.ReadFile(filepath.Join(s.dir, id, snapshotMetaFile))
	if err != nil {
		return meta, err
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return meta, fmt.Errorf("%s: %w", snapshotMetaFile, err)
	}
	if meta.Layout != snapshotMetaVersion || meta.ID != id {
		return meta, fmt.Errorf("%s: layout %d, id %q", snapshotMetaFile, meta.Layout, meta.ID)
	}
	return meta, nil
}

// Open implements raft.SnapshotStore.
func (s *SnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, err := s.readMeta(id)
	if err != nil {
		return nil, nil, fmt.Errorf("distlog: snapshot store: open %s: %w", id, err)
	}
	if meta.Parts != nil {
		return &meta.SnapshotMeta, newPartsReader(s.poolRoot(), filepath.Join(s.dir, id, snapshotLinksDir), meta.Parts), nil
	}
	f, err := os.Open(filepath.Join(s.dir, id, snapshotStreamFile))
	if err != nil {
		return nil, nil, fmt.Errorf("distlog: snapshot store: open %s: %w", id, err)
	}
	return &meta.SnapshotMeta, f, nil
}

// reap removes all but the newest retain snapshots, then the pool
// directories that neither a kept snapshot nor a capture in flight uses.
// (Within a pool directory, sealed segments are only ever added, so a
// directory in use is kept whole.)
func (s *SnapshotStore) reap() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	metas, err := s.list()
	if err != nil {
		return err
	}
	var errs []error
	for _, meta := range metas[min(len(metas), s.retain):] {
		if err := os.RemoveAll(filepath.Join(s.dir, meta.ID)); err != nil {
			errs = append(errs, fmt.Errorf("distlog: snapshot store: remove %s: %w", meta.ID, err))
		}
	}
	used := map[string]bool{}
	for p := range s.held {
		used[p] = true
	}
	// from is, per pool directory, the lowest sealed segment a kept
	// snapshot reads from it: links below it (segments retention deleted)
	// are of no use any more.
	from := map[string]uint64{}
	for _, meta := range metas[:min(len(metas), s.retain)] {
		for _, part := range meta.Parts {
			if part.Pool == "" {
				continue
			}
			if f, ok := from[part.Pool]; !ok || part.From < f {
				from[part.Pool] = part.From
			}
			used[part.Pool] = true
		}
	}
	pools, err := os.ReadDir(s.poolRoot())
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("distlog: snapshot store: %w", err))...)
	}
	for _, p := range pools {
		if used[p.Name()] {
			if _, held := s.held[p.Name()]; !held {
				errs = append(errs, s.prunePool(p.Name(), from[p.Name()]))
			}
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.poolRoot(), p.Name())); err != nil {
			errs = append(errs, fmt.Errorf("distlog: snapshot store: remove pool %s: %w", p.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// prunePool removes the links of pool directory name to segments below
// from, which no kept snapshot reads.
func (s *SnapshotStore) prunePool(name string, from uint64) error {
	dir := filepath.Join(s.poolRoot(), name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("distlog: snapshot store: %w", err)
	}
	var errs []error
	for _, e := range entries {
		base, ok := storage.ParseStoreFileName(e.Name())
		if !ok || base >= from {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("distlog: snapshot store: prune %s: %w", e.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// snapshotSink is a snapshot being written: either the stream (Write), or
// a capture taken over by adopt.
type snapshotSink struct {
	store  *SnapshotStore
	tmp    string
	meta   snapshotMetaFileContent
	stream *os.File // created by the first Write
	// adopted is set by adopt: the snapshot is in linked form.
	adopted bool
	done    bool
}

var _ raft.SnapshotSink = (*snapshotSink)(nil)

// ID implements raft.SnapshotSink.
func (s *snapshotSink) ID() string { return s.meta.ID }

// Write implements io.Writer: the snapshot is in stream form.
func (s *snapshotSink) Write(p []byte) (int, error) {
	if s.done || s.adopted {
		return 0, errors.New("distlog: snapshot sink: write after close or adopt")
	}
	if s.stream == nil {
		f, err := os.Create(filepath.Join(s.tmp, snapshotStreamFile))
		if err != nil {
			return 0, fmt.Errorf("distlog: snapshot sink: %w", err)
		}
		s.stream = f
	}
	n, err := s.stream.Write(p)
	s.meta.Size += int64(n)
	return n, err
}

// adopt takes over a capture: the links in dir move into the snapshot;
// parts (with their files relative to dir or in the pool) make up its
// stream, of size bytes.
func (s *snapshotSink) adopt(dir string, parts []snapshotPart, size int64) error {
	if s.done || s.stream != nil {
		return errors.New("distlog: snapshot sink: adopt after write or close")
	}
	if err := os.Rename(dir, filepath.Join(s.tmp, snapshotLinksDir)); err != nil {
		return fmt.Errorf("distlog: snapshot sink: %w", err)
	}
	s.adopted = true
	s.meta.Parts = parts
	s.meta.Size = size
	return nil
}

// Close implements raft.SnapshotSink: the snapshot becomes durable and
// visible, and snapshots beyond the store's retain are removed. Closing
// twice does nothing.
func (s *snapshotSink) Close() error {
	if s.done {
		return nil
	}
	s.done = true
	if err := s.finish(); err != nil {
		return errors.Join(err, os.RemoveAll(s.tmp))
	}
	return s.store.reap()
}

func (s *snapshotSink) finish() error {
	if s.stream != nil {
		err := s.stream.Sync()
		if closeErr := s.stream.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return fmt.Errorf("distlog: snapshot sink: %w", err)
		}
	} else if !s.adopted {
		// An empty stream: a snapshot without content.
		if err := os.WriteFile(filepath.Join(s.tmp, snapshotStreamFile), nil, 0o644); err != nil {
			return fmt.Errorf("distlog: snapshot sink: %w", err)
		}
	}
	if s.adopted {
		// The links' data was fsynced by the capture; their directory
		// entries are made durable here.
		if err := syncDirs(filepath.Join(s.tmp, snapshotLinksDir)); err != nil {
			return err
		}
	}
	b, err := json.Marshal(s.meta)
	if err != nil {
		return fmt.Errorf("distlog: snapshot sink: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(s.tmp, snapshotMetaFile), b); err != nil {
		return err
	}
	final := filepath.Join(s.store.dir, s.meta.ID)
	if err := os.Rename(s.tmp, final); err != nil {
		return fmt.Errorf("distlog: snapshot sink: %w", err)
	}
	return storage.SyncDir(s.store.dir)
}

// syncDirs fsyncs dir and every directory directly in it.
func syncDirs(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("distlog: snapshot sink: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := storage.SyncDir(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return storage.SyncDir(dir)
}

// Cancel implements raft.SnapshotSink: the snapshot is discarded.
func (s *snapshotSink) Cancel() error {
	if s.done {
		return nil
	}
	s.done = true
	var err error
	if s.stream != nil {
		err = s.stream.Close()
	}
	return errors.Join(err, os.RemoveAll(s.tmp))
}
