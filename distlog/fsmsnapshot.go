package distlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/raft"
	"github.com/proglog/proglog/distlog/storage"
	"go.uber.org/zap"
)

// A snapshot of the state machine is a stream:
//
//	state:  [8 bytes "PLGSNAP2"][4-byte body length][body][4-byte CRC32-C of the body]
//	body:   [4-byte metadata length][metadata table, see metadata]
//	        per topic of the table, in its order: [8-byte lowest offset][8-byte next offset]
//	        [8-byte Raft index and 4-byte batch position of the last record][8-byte stream length]
//	then, per topic in the same order, the topic's storage stream (storage.Log.Reader format) of that length.
//
// The metadata's applied index is the Raft index the snapshot reflects. On
// the node that takes it, the snapshot is not written out: Snapshot
// hard-links the topics' segment files (storage.Log.LinkSegments) and the
// SnapshotStore keeps the links and the state, and produces the stream
// only when it is read (a follower's InstallSnapshot, or a restore).
const (
	snapshotMagic = "PLGSNAP2"
	// snapshotTopicBytes is one topic's progress in the body.
	snapshotTopicBytes = 8 + 8 + 8 + 4 + 8
	// maxSnapshotBodyBytes bounds the body read from a stream.
	maxSnapshotBodyBytes = 64 << 20
)

// snapshotTopic is one topic of a snapshot.
type snapshotTopic struct {
	lowest, next uint64
	lastIndex    uint64
	lastPos      uint32
	streamBytes  uint64
}

// snapshotState is a snapshot's state section, decoded.
type snapshotState struct {
	meta   metadata
	topics []snapshotTopic // in meta.topics order
}

func (s snapshotState) encode() []byte {
	meta := s.meta.encode()
	body := make([]byte, 0, 4+len(meta)+len(s.topics)*snapshotTopicBytes)
	body = binary.BigEndian.AppendUint32(body, uint32(len(meta)))
	body = append(body, meta...)
	for _, t := range s.topics {
		body = binary.BigEndian.AppendUint64(body, t.lowest)
		body = binary.BigEndian.AppendUint64(body, t.next)
		body = binary.BigEndian.AppendUint64(body, t.lastIndex)
		body = binary.BigEndian.AppendUint32(body, t.lastPos)
		body = binary.BigEndian.AppendUint64(body, t.streamBytes)
	}
	buf := make([]byte, 0, len(snapshotMagic)+8+len(body))
	buf = append(buf, snapshotMagic...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(body)))
	buf = append(buf, body...)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(body, castagnoli))
}

// readSnapshotState reads a snapshot's state section from r.
func readSnapshotState(r io.Reader) (snapshotState, error) {
	var head [len(snapshotMagic) + 4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return snapshotState{}, fmt.Errorf("%w: state header: %w", ErrBadSnapshot, err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return snapshotState{}, fmt.Errorf("%w: not a distlog snapshot of this format (magic %q)", ErrBadSnapshot, head[:len(snapshotMagic)])
	}
	n := binary.BigEndian.Uint32(head[len(snapshotMagic):])
	if n > maxSnapshotBodyBytes {
		return snapshotState{}, fmt.Errorf("%w: state of %d bytes", ErrBadSnapshot, n)
	}
	body := make([]byte, n+4)
	if _, err := io.ReadFull(r, body); err != nil {
		return snapshotState{}, fmt.Errorf("%w: state: %w", ErrBadSnapshot, err)
	}
	body, sum := body[:n], binary.BigEndian.Uint32(body[n:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return snapshotState{}, fmt.Errorf("%w: state checksum %#08x, stored %#08x", ErrBadSnapshot, got, sum)
	}
	if len(body) < 4 || uint64(binary.BigEndian.Uint32(body)) > uint64(len(body)-4) {
		return snapshotState{}, fmt.Errorf("%w: bad metadata length", ErrBadSnapshot)
	}
	metaLen := binary.BigEndian.Uint32(body)
	meta, err := decodeMetadata(body[4 : 4+metaLen])
	if err != nil {
		return snapshotState{}, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	rest := body[4+metaLen:]
	if len(rest) != len(meta.topics)*snapshotTopicBytes {
		return snapshotState{}, fmt.Errorf("%w: %d bytes of progress for %d topics", ErrBadSnapshot, len(rest), len(meta.topics))
	}
	s := snapshotState{meta: meta}
	for range meta.topics {
		t := snapshotTopic{
			lowest:      binary.BigEndian.Uint64(rest),
			next:        binary.BigEndian.Uint64(rest[8:]),
			lastIndex:   binary.BigEndian.Uint64(rest[16:]),
			lastPos:     binary.BigEndian.Uint32(rest[24:]),
			streamBytes: binary.BigEndian.Uint64(rest[28:]),
		}
		if t.next < t.lowest || t.streamBytes < storage.StreamHeaderBytes {
			return snapshotState{}, fmt.Errorf("%w: topic progress %+v", ErrBadSnapshot, t)
		}
		s.topics = append(s.topics, t)
		rest = rest[snapshotTopicBytes:]
	}
	return s, nil
}

// Snapshot implements raft.FSM. It runs on the FSM goroutine, so the
// capture holds exactly the state up to the last applied entry: the table,
// and for each topic hard links to its segment files and their sizes now,
// no record copied, and no fsync: appends wait while it runs (an fsync of
// the written topics here held them 2–24 ms a snapshot), so Persist makes
// the capture durable, on Raft's snapshot goroutine, before the sink's
// Close lets Raft compact its log. Sealed segments go to the snapshot store's pool, once
// each (see storage.Log.LinkSegments); the active ones to a staging
// directory that the snapshot takes over. Its cost grows with the number
// of topics and of segments sealed since the last snapshot, not with the
// records held.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		return nil, fmt.Errorf("%w: %w", ErrFSMFailed, f.failed)
	}
	stage := f.spareStage
	f.spareStage = ""
	snap := &fsmSnapshot{dir: stage, pool: f.snapshots.poolRoot(), logger: f.logger, prepare: f.prepareStage}
	fail := func(err error) (raft.FSMSnapshot, error) {
		snap.prepare = nil // it takes mu, held here; the next capture makes its own
		snap.Release()
		return nil, fmt.Errorf("distlog: snapshot: %w", err)
	}
	if stage == "" {
		stage = f.nextStageLocked()
		snap.dir = stage
		if err := makeStage(stage); err != nil {
			return fail(err)
		}
	}
	state := snapshotState{meta: metadata{applied: f.applied, producers: f.producers.clone(), offsets: maps.Clone(f.offsets)}}
	names := make([]string, 0, len(f.topics))
	for name := range f.topics {
		names = append(names, name)
	}
	slices.Sort(names)
	var pools []string
	for _, name := range names {
		t := f.topics[name]
		pool := poolDirName(t.id, t.log.Epoch())
		pools = append(pools, pool)
		// Every topic's active segment is linked straight into the stage,
		// which is fsynced once below: a directory per topic cost an fsync
		// per topic per snapshot (1.3 s a snapshot with 1,000 topics).
		// Snapshots of earlier releases name <topic dir>/<store file>;
		// these <topic dir>-<store file>.
		activePrefix := topicDirName(t.id) + "-"
		poolDir, err := f.snapshots.makePoolDir(pool)
		if err != nil {
			return fail(err)
		}
		c, err := t.log.LinkSegments(poolDir, stage, activePrefix)
		if err != nil {
			return fail(fmt.Errorf("topic %q: %w", name, err))
		}
		snap.captures = append(snap.captures, c)
		state.meta.topics = append(state.meta.topics, t.topicMeta)
		st := snapshotTopic{lowest: c.Lowest, next: c.Next, lastIndex: t.lastIndex, lastPos: t.lastPos, streamBytes: c.StreamBytes()}
		state.topics = append(state.topics, st)
		sealed, last := c.Segments[:len(c.Segments)-1], c.Segments[len(c.Segments)-1]
		snap.parts = append(snap.parts, snapshotPart{Data: c.StreamHeader()})
		if len(sealed) > 0 {
			snap.parts = append(snap.parts, snapshotPart{Pool: pool, From: sealed[0].Base, Files: uint64(len(sealed))})
		}
		snap.parts = append(snap.parts, snapshotPart{File: activePrefix + storage.StoreFileName(last.Base), Size: last.Size})
		snap.size += int64(st.streamBytes)
	}
	stateBytes := state.encode()
	snap.size += int64(len(stateBytes))
	snap.parts = append([]snapshotPart{{Data: stateBytes}}, snap.parts...)
	snap.release = f.snapshots.hold(pools)
	return snap, nil
}

// nextStageLocked names a new staging directory. Caller holds mu.
func (f *fsm) nextStageLocked() string {
	f.stagings++
	return filepath.Join(f.snapshots.stagingDir(), fmt.Sprintf("capture-%d", f.stagings))
}

// makeStage makes stage an empty directory (a crash may have left one of
// that name).
func makeStage(stage string) error {
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	return os.Mkdir(stage, 0o755)
}

// prepareStage makes an empty staging directory for the next capture,
// unless one is waiting. A failure only leaves the next capture to make
// its own.
func (f *fsm) prepareStage() {
	f.mu.Lock()
	if f.spareStage != "" {
		f.mu.Unlock()
		return
	}
	stage := f.nextStageLocked()
	f.mu.Unlock()
	if err := makeStage(stage); err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spareStage == "" {
		f.spareStage = stage
		return
	}
	_ = os.Remove(stage) // another Release made one meanwhile
}

// topicDirName is the name of the directory of the topic with id.
func topicDirName(id uint64) string { return fmt.Sprintf("%020d", id) }

// poolDirName is the name of the pool directory of the sealed segments of
// the topic with id in its log's epoch.
func poolDirName(id, epoch uint64) string { return fmt.Sprintf("%020d-%d", id, epoch) }

// fsmSnapshot is a capture of the state machine: the active segments'
// links in dir, the sealed ones in the pool, the parts that make up its
// stream and the stream's size.
type fsmSnapshot struct {
	dir   string
	pool  string // the snapshot store's pool directory
	parts []snapshotPart
	size  int64
	// captures are the topics' captures, made durable by Persist.
	captures []storage.Capture
	// prepare makes the state machine's next staging directory; Release
	// calls it, off the state machine's goroutine.
	prepare func()
	// release lets the snapshot store reap the pool directories the
	// capture uses again; nil once called.
	release func()
	logger  *zap.Logger
}

// Persist implements raft.FSMSnapshot. A sink of the SnapshotStore takes
// the links over (moved, not copied), once the capture is durable; any
// other sink gets the stream.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	var err error
	if ours, ok := sink.(*snapshotSink); ok {
		err = s.sync()
		if err == nil {
			err = ours.adopt(s.dir, s.parts, s.size)
		}
	} else {
		r := newPartsReader(s.pool, s.dir, s.parts)
		_, err = io.Copy(sink, r)
		err = errors.Join(err, r.Close())
	}
	if err != nil {
		return errors.Join(fmt.Errorf("distlog: write snapshot: %w", err), sink.Cancel())
	}
	return nil
}

// sync makes the capture durable: the records each topic held when it was
// taken, and the links to them.
func (s *fsmSnapshot) sync() error {
	for _, c := range s.captures {
		if err := c.Sync(); err != nil {
			return err
		}
	}
	return storage.SyncDir(s.dir)
}

// Release implements raft.FSMSnapshot: it removes the links the sink did
// not take, and lets the store reap the pool again.
func (s *fsmSnapshot) Release() {
	if err := os.RemoveAll(s.dir); err != nil {
		s.logger.Warn("removing a snapshot capture failed", zap.String("dir", s.dir), zap.Error(err))
	}
	if s.release != nil {
		s.release()
		s.release = nil
	}
	if s.prepare != nil {
		s.prepare()
		s.prepare = nil
	}
}

// Restore implements raft.FSM: the state becomes the snapshot's. A topic
// whose local log already holds the snapshot's records (Raft restores its
// latest snapshot at every start, and the topics survived the restart) is
// kept as it is, and its part of the stream is not read when no later topic
// needs rebuilding; the others are rebuilt from the stream. Local topics
// the snapshot does not have are removed (entries after the snapshot that
// created them are replayed).
func (f *fsm) Restore(rc io.ReadCloser) (err error) {
	defer func() { err = errors.Join(err, rc.Close()) }()
	state, err := readSnapshotState(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	keep := make([]bool, len(state.topics))
	lastRebuilt := -1
	for i, tm := range state.meta.topics {
		local, ok := f.topics[tm.name]
		keep[i] = f.failed == nil && ok && local.id == tm.id && local.log != nil && local.holds(state.topics[i])
		if !keep[i] {
			lastRebuilt = i
		}
	}
	topics := make(map[string]*topicState, len(state.meta.topics))
	var opened []*topicState // new logs, closed if the restore fails
	fail := func(err error) error {
		for _, t := range opened {
			err = errors.Join(err, t.log.Close())
		}
		f.failed = err
		f.signalFailed()
		return err
	}
	for i, tm := range state.meta.topics {
		st := state.topics[i]
		if keep[i] {
			topics[tm.name] = f.topics[tm.name]
			if i < lastRebuilt {
				if _, err := io.CopyN(io.Discard, rc, int64(st.streamBytes)); err != nil {
					return fail(fmt.Errorf("%w: topic %q: %w", ErrBadSnapshot, tm.name, err))
				}
			}
			continue
		}
		t, ok := f.topics[tm.name]
		if !ok || t.id != tm.id || t.log == nil {
			if t, err = f.openTopic(tm); err != nil {
				return fail(err)
			}
			opened = append(opened, t)
		}
		if err := t.log.Restore(io.LimitReader(rc, int64(st.streamBytes))); err != nil {
			return fail(fmt.Errorf("distlog: restore topic %q: %w", tm.name, err))
		}
		if next := t.log.NextOffset(); next != st.next {
			return fail(fmt.Errorf("%w: topic %q restored up to %d, snapshot says %d", ErrBadSnapshot, tm.name, next, st.next))
		}
		t.lastIndex, t.lastPos = st.lastIndex, st.lastPos
		topics[tm.name] = t
		f.restores++
		f.logger.Info("restored topic from snapshot", zap.String("topic", tm.name), zap.Uint64("next_offset", st.next))
	}
	for _, tm := range state.meta.topics {
		// Retention and segment age: the snapshot's config and lowest
		// offset (an alter entry the snapshot covers may have changed the
		// age a kept topic's log rolls at); segments wholly below the
		// lowest offset go here too.
		t := topics[tm.name]
		t.config, t.lowest = tm.config, tm.lowest
		t.log.SetSegmentMaxAge(f.segmentMaxAge(t.config))
		if err := t.log.Truncate(tm.lowest); err != nil {
			f.logger.Warn("removing segments below the lowest offset failed", zap.String("topic", tm.name), zap.Error(err))
		}
	}
	old := f.topics
	f.topics = topics
	f.producers = state.meta.producers.clone()
	f.offsets = maps.Clone(state.meta.offsets)
	if err := f.persistMetaLocked(state.meta.applied); err != nil {
		return fail(err)
	}
	f.applied = state.meta.applied
	var errs []error
	for name, t := range old {
		if topics[name] != t && t.log != nil {
			errs = append(errs, t.log.Remove())
		}
	}
	if err := errors.Join(errs...); err != nil {
		f.logger.Warn("removing topics replaced by a snapshot failed", zap.Error(err))
	}
	f.failed = nil
	f.logger.Info("state restored from snapshot", zap.Uint64("applied_index", state.meta.applied),
		zap.Int("topics", len(topics)), zap.Int("rebuilt", lastRebuilt+1-countTrue(keep[:lastRebuilt+1])))
	return nil
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// holds reports whether the topic's log already holds every record of the
// snapshot's topic st: committed history is the same on every node, so it
// does when its record at st's last offset came from the same Raft entry
// and batch position.
func (t *topicState) holds(st snapshotTopic) bool {
	if st.next == st.lowest {
		return true
	}
	if t.log.NextOffset() < st.next {
		return false
	}
	rec, err := t.log.Read(st.next - 1)
	if err != nil {
		return false
	}
	return rec.EntryIndex == st.lastIndex && rec.BatchPos == st.lastPos
}

// snapshotPart is one piece of a snapshot stream: inline bytes, the frames
// of a run of sealed store files in a pool directory, or the frames of a
// captured active store file.
type snapshotPart struct {
	// Data is inline bytes.
	Data []byte `json:",omitempty"`
	// Pool names a pool directory: the part is the Files store files
	// from the one of base From on, in base order, each without its
	// header and to its end (sealed files never change).
	Pool  string `json:",omitempty"`
	From  uint64 `json:",omitempty"`
	Files uint64 `json:",omitempty"`
	// File names a store file relative to the snapshot's links: the part
	// is its bytes from the end of its header to Size.
	File string `json:",omitempty"`
	Size uint64 `json:",omitempty"`
}

// partsReader streams parts: pool directories are under poolRoot, files
// under links.
type partsReader struct {
	poolRoot, links string
	parts           []snapshotPart
	// files are the store files left of the part being read.
	files []fileExtent
	cur   *os.File
	// frames reads cur's frames, checked (storage.CheckFrames): a
	// damaged segment is reported here, naming its file, rather than by
	// the follower that receives the stream.
	frames io.Reader
	left   int64 // bytes left in cur
	data   []byte
	err    error
}

type fileExtent struct {
	path string
	size int64
}

func newPartsReader(poolRoot, links string, parts []snapshotPart) *partsReader {
	return &partsReader{poolRoot: poolRoot, links: links, parts: parts}
}

// extents lists the store files of a pool or file part and how far each
// is read.
func (r *partsReader) extents(p snapshotPart) ([]fileExtent, error) {
	if p.File != "" {
		return []fileExtent{{path: filepath.Join(r.links, p.File), size: int64(p.Size)}}, nil
	}
	dir := filepath.Join(r.poolRoot, p.Pool)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []fileExtent
	for _, e := range entries {
		base, ok := storage.ParseStoreFileName(e.Name())
		if !ok || base < p.From || uint64(len(files)) == p.Files {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		files = append(files, fileExtent{path: filepath.Join(dir, e.Name()), size: fi.Size()})
	}
	if uint64(len(files)) != p.Files {
		return nil, fmt.Errorf("%w: %s holds %d store files from %d, want %d", ErrBadSnapshot, dir, len(files), p.From, p.Files)
	}
	return files, nil
}

// Read implements io.Reader.
func (r *partsReader) Read(p []byte) (int, error) {
	for r.err == nil {
		switch {
		case len(r.data) > 0:
			n := copy(p, r.data)
			r.data = r.data[n:]
			return n, nil
		case r.cur != nil && r.left > 0:
			n, err := r.frames.Read(p[:min(int64(len(p)), r.left)])
			r.left -= int64(n)
			if err != nil && !(errors.Is(err, io.EOF) && r.left == 0) {
				// The error names the file.
				r.err = fmt.Errorf("distlog: snapshot: %w", err)
			}
			return n, nil
		case r.cur != nil:
			r.err = r.cur.Close()
			r.cur = nil
		case len(r.files) > 0:
			f := r.files[0]
			r.files = r.files[1:]
			file, err := os.Open(f.path)
			if err != nil {
				r.err = fmt.Errorf("distlog: snapshot: %w", err)
				break
			}
			if _, err := file.Seek(storage.SegmentHeaderBytes, io.SeekStart); err != nil {
				r.err = errors.Join(fmt.Errorf("distlog: snapshot: %w", err), file.Close())
				break
			}
			r.cur, r.left = file, max(0, f.size-storage.SegmentHeaderBytes)
			base, _ := storage.ParseStoreFileName(filepath.Base(f.path))
			r.frames = storage.CheckFrames(file, f.path, base, uint64(r.left))
		case len(r.parts) > 0:
			part := r.parts[0]
			r.parts = r.parts[1:]
			r.data = part.Data
			if part.Pool != "" || part.File != "" {
				r.files, r.err = r.extents(part)
			}
		default:
			r.err = io.EOF
		}
	}
	return 0, r.err
}

// Close releases the file being read. It is idempotent.
func (r *partsReader) Close() error {
	if r.err == nil {
		r.err = errors.New("distlog: snapshot reader closed")
	}
	if r.cur == nil {
		return nil
	}
	err := r.cur.Close()
	r.cur = nil
	return err
}
