package distlog

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
	"go.uber.org/zap"
)

// ErrFSMFailed is returned for every entry once the state machine stopped:
// a write to a topic's log failed, or an entry held a command this release
// does not know (ErrUnknownCommand). It then stops applying (fail-stop)
// rather than let this node's state differ from the others', and refuses
// snapshots, so Raft keeps every entry after the last one applied; a
// restart of the node (with a release that knows the command) replays
// them.
var ErrFSMFailed = errors.New("distlog: state machine stopped; restart the node")

// topicsDirName is the directory of the topics' logs in the data directory.
const topicsDirName = "topics"

// applyResult is the response of one applied command entry.
type applyResult struct {
	first uint64 // append: offset of the batch's first record
	count int    // append: records in the batch
	// runs is a producer-append's outcome, one per run (produce call).
	runs []api.ProducerResult
	err  error
	// skipped is true for an entry that was applied before (Raft replaying
	// it after a restart); first and count are then not known. Nobody
	// waits for such an entry: it was applied by an earlier run of the
	// process.
	skipped bool
}

// topicState is one topic as the state machine holds it.
type topicState struct {
	topicMeta
	log *storage.Log
	// lastIndex is the Raft index of the entry that appended the topic's
	// last record (0: none here); lastPos is that record's position in the
	// entry's batch.
	lastIndex uint64
	lastPos   uint32
}

// fsm is Raft's state machine: named topics, each a storage.Log in its own
// directory, and the metadata table (see metadata).
//
// Restart safety. The topics' logs are not fsynced at every apply (they can
// be rebuilt from the fsynced Raft log), so what has been applied is
// written atomically with the data it produced: every record carries the
// Raft index of its entry (EntryIndex) and its position in the entry's
// batch (BatchPos), and every change of the metadata table is written with
// the index of its entry. After a restart Raft replays the entries after
// its last snapshot: an append the topic's log already holds is skipped,
// one a crash cut short is completed, and a create or delete at or below
// the table's applied index is skipped.
//
// Apply, ApplyBatch, Snapshot and Restore run on Raft's single FSM
// goroutine; mu makes the topics readable by others (DistributedLog.Read
// looks a topic up under mu and reads its log without it).
type fsm struct {
	dir       string // data directory: the metadata file and topics/
	logConfig storage.Config
	logger    *zap.Logger
	// snapshots is where Snapshot hard-links the topics' segments.
	snapshots *SnapshotStore

	mu sync.RWMutex
	// meta is the metadata table; topics holds its topics by name.
	meta   metadata
	topics map[string]*topicState
	// topicsChanged is closed and replaced at every change of the set of
	// topics (create, delete, restore), for readers waiting for a topic
	// this node has not applied yet.
	topicsChanged chan struct{}
	// producers is the idempotent producers' state (see producers.go),
	// changed by every producer-append entry above meta.applied.
	producers producerTable
	// offsets are the consumer groups' committed offsets (see groups.go).
	offsets map[groupKey]uint64
	// retentionDeleted counts the store-file bytes retention deleted.
	retentionDeleted uint64
	// failed stops the state machine; see ErrFSMFailed.
	failed error
	// failures receives a token each time failed is set (buffered 1, never
	// blocks): the node then hands leadership over (stepDownLoop).
	failures chan struct{}
	// restores counts topics rebuilt from a snapshot stream.
	restores uint64
	// stagings counts captures, to name their staging directories.
	stagings uint64
	// spareStage is an empty staging directory made ahead of the next
	// capture ("" when none): a mkdir right after the fsyncs of a
	// snapshot's close waited for the file system's journal, ~0.9 ms, and
	// a capture runs while appends wait. Guarded by mu.
	spareStage string
	// applied is the Raft index of the last entry applied (of any type),
	// the index a snapshot taken now reflects.
	applied uint64
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

// newFSM opens the state machine in dir: the metadata table and every
// topic's log. A directory without a table starts with DefaultTopic alone.
func newFSM(dir string, logConfig storage.Config, snapshots *SnapshotStore, logger *zap.Logger) (*fsm, error) {
	f := &fsm{dir: dir, logConfig: logConfig, logger: logger, snapshots: snapshots,
		topics: map[string]*topicState{}, topicsChanged: make(chan struct{}), failures: make(chan struct{}, 1)}
	if err := os.MkdirAll(filepath.Join(dir, topicsDirName), 0o755); err != nil {
		return nil, fmt.Errorf("distlog: create %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, metaFileName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		f.meta = metadata{topics: []topicMeta{{name: DefaultTopic}}}
		if err := writeFileAtomic(filepath.Join(dir, metaFileName), f.meta.encode()); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("distlog: read metadata: %w", err)
	default:
		if f.meta, err = decodeMetadata(b); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, metaFileName), err)
		}
	}
	f.applied = f.meta.applied
	f.producers = f.meta.producers.clone()
	f.offsets = maps.Clone(f.meta.offsets)
	if f.offsets == nil {
		f.offsets = map[groupKey]uint64{}
	}
	for _, t := range f.meta.topics {
		ts, err := f.openTopic(t)
		if err != nil {
			return nil, errors.Join(err, f.Close())
		}
		f.topics[t.name] = ts
	}
	if err := f.removeStrayTopicDirs(); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

// topicDir is the directory of the topic with id.
func (f *fsm) topicDir(id uint64) string {
	return filepath.Join(f.dir, topicsDirName, topicDirName(id))
}

// topicLogConfig is the storage config of a topic with cfg.
func (f *fsm) topicLogConfig(t topicMeta) storage.Config {
	c := f.logConfig
	c.MaxRecordBytes = f.maxRecordBytes(t.config)
	if t.config.SegmentBytes != 0 {
		c.Segment.MaxStoreBytes = t.config.SegmentBytes
	}
	c.Segment.InitialOffset = 0
	c.Segment.MaxAge = f.segmentMaxAge(t.config)
	c.Logger = f.logger.With(zap.String("topic", t.name))
	return c
}

// segmentMaxAge is how long a segment of a topic with cfg may span: the
// topic's own SegmentAge when it has one; otherwise the node's
// TopicSegments.MaxAge for a topic with a retention age, which only whole
// sealed segments can meet, and none (size only) for the others, whose
// segments would otherwise pile up one an hour for as long as a trickle of
// records comes, each holding two open files.
func (f *fsm) segmentMaxAge(cfg TopicConfig) time.Duration {
	switch {
	case cfg.SegmentAge != 0:
		return cfg.SegmentAge
	case cfg.RetentionAge == 0:
		return 0
	default:
		return f.logConfig.Segment.MaxAge
	}
}

// effectiveConfig is the configuration this node applies to a topic with
// cfg, its defaults filled in (TopicInfo.Effective).
func (f *fsm) effectiveConfig(cfg TopicConfig) TopicConfig {
	e := cfg
	e.MaxRecordBytes = f.maxRecordBytes(cfg)
	if e.SegmentBytes == 0 {
		e.SegmentBytes = f.logConfig.Segment.MaxStoreBytes
	}
	e.SegmentAge = f.segmentMaxAge(cfg)
	return e
}

// maxRecordBytes is the record limit of a topic with cfg on this node.
func (f *fsm) maxRecordBytes(cfg TopicConfig) uint64 {
	if cfg.MaxRecordBytes != 0 {
		return cfg.MaxRecordBytes
	}
	return f.logConfig.MaxRecordBytes
}

// openTopic opens (creating when absent) the log of topic t and reads its
// progress from its last record.
func (f *fsm) openTopic(t topicMeta) (*topicState, error) {
	log, err := storage.NewLog(f.topicDir(t.id), f.topicLogConfig(t))
	if err != nil {
		return nil, fmt.Errorf("distlog: topic %q: %w", t.name, err)
	}
	ts := &topicState{topicMeta: t, log: log}
	if err := ts.loadProgress(); err != nil {
		return nil, errors.Join(fmt.Errorf("distlog: topic %q: %w", t.name, err), log.Close())
	}
	return ts, nil
}

// loadProgress reads the Raft index and batch position of the last record.
func (t *topicState) loadProgress() error {
	lowest, err := t.log.LowestOffset()
	if err != nil {
		return err
	}
	next := t.log.NextOffset()
	if next == lowest {
		t.lastIndex, t.lastPos = 0, 0
		return nil
	}
	last, err := t.log.Read(next - 1)
	if err != nil {
		return fmt.Errorf("read last record %d: %w", next-1, err)
	}
	t.lastIndex, t.lastPos = last.EntryIndex, last.BatchPos
	return nil
}

// removeStrayTopicDirs removes topic directories the table does not name:
// a delete or a restore that a crash interrupted after the table was
// written.
func (f *fsm) removeStrayTopicDirs() error {
	entries, err := os.ReadDir(filepath.Join(f.dir, topicsDirName))
	if err != nil {
		return fmt.Errorf("distlog: read topics: %w", err)
	}
	known := map[uint64]bool{}
	for _, t := range f.meta.topics {
		known[t.id] = true
	}
	for _, e := range entries {
		id, err := strconv.ParseUint(e.Name(), 10, 64)
		if err == nil && known[id] {
			continue
		}
		f.logger.Warn("removing a topic directory the metadata does not name", zap.String("dir", e.Name()))
		if err := os.RemoveAll(filepath.Join(f.dir, topicsDirName, e.Name())); err != nil {
			return fmt.Errorf("distlog: remove stray topic: %w", err)
		}
	}
	return storage.SyncDir(filepath.Join(f.dir, topicsDirName))
}

// persistMetaLocked writes the metadata table with applied index. Caller
// holds mu. The topics' logs are synced first: the table's producer state
// says which calls were appended, and producer-append entries at or below
// its applied index are not applied again, so their records must be on
// disk before it. (Every append is a producer-append entry since group
// commit, with or without producers, so the sync is unconditional; it
// happens at topic changes and retention cuts, not per append.)
func (f *fsm) persistMetaLocked(applied uint64) error {
	m := metadata{applied: applied, producers: f.producers.clone(), offsets: maps.Clone(f.offsets)}
	for _, t := range f.topics {
		m.topics = append(m.topics, t.topicMeta)
		if t.log != nil {
			if err := t.log.Sync(); err != nil {
				return fmt.Errorf("distlog: sync topic %q: %w", t.name, err)
			}
		}
	}
	slices.SortFunc(m.topics, func(a, b topicMeta) int { return strings.Compare(a.name, b.name) })
	if err := writeFileAtomic(filepath.Join(f.dir, metaFileName), m.encode()); err != nil {
		return err
	}
	f.meta = m
	f.applied = max(f.applied, applied)
	close(f.topicsChanged)
	f.topicsChanged = make(chan struct{})
	return nil
}

// lookup returns topic name's state, or false.
func (f *fsm) lookup(name string) (*topicState, bool) {
	t, ok, _ := f.lookupOrWait(name)
	return t, ok
}

// lookupOrWait returns topic name's state, or false and a channel closed
// at the next change of the set of topics.
func (f *fsm) lookupOrWait(name string) (*topicState, bool, <-chan struct{}) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.topics[name]
	return t, ok, f.topicsChanged
}

// topicInfos returns every topic, sorted by name.
func (f *fsm) topicInfos() []TopicInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	infos := make([]TopicInfo, 0, len(f.topics))
	for _, t := range f.topics {
		infos = append(infos, f.infoLocked(t))
	}
	slices.SortFunc(infos, func(a, b TopicInfo) int { return strings.Compare(a.Name, b.Name) })
	return infos
}

// infoLocked describes topic t. A closed log (the topic is being deleted)
// reports zeros. Caller holds mu (read).
func (f *fsm) infoLocked(t *topicState) TopicInfo {
	info := TopicInfo{Name: t.name, Config: t.config, Effective: f.effectiveConfig(t.config), NextOffset: t.log.NextOffset()}
	info.LowestOffset, _ = t.log.LowestOffset()
	info.LowestOffset = min(max(info.LowestOffset, t.lowest), info.NextOffset)
	info.Records = info.NextOffset - info.LowestOffset
	info.Bytes, _ = t.log.Bytes()
	info.Segments, _ = t.log.SegmentCount()
	return info
}

// appliedIndex is the highest Raft index reflected in the state: the
// table's, or the entry of a topic's last record.
func (f *fsm) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	applied := f.meta.applied
	for _, t := range f.topics {
		applied = max(applied, t.lastIndex)
	}
	return applied
}

// restoreCount returns how many topics were rebuilt from snapshot streams.
func (f *fsm) restoreCount() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.restores
}

// Err returns the error that stopped the fsm, or nil.
func (f *fsm) Err() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.failed
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// pendingAppend is an append entry whose records are being gathered.
type pendingAppend struct {
	response int    // index of its response
	records  int    // index of its first new record in the topic's batch
	skip     uint32 // records of its batch already in the log before this apply
	count    int    // records in its batch
	// runs is a producer-append's outcome, its offsets decided when it
	// was gathered.
	runs []api.ProducerResult
}

// topicBatch gathers the records of consecutive append entries to one
// topic, written with one AppendBatch.
type topicBatch struct {
	topic   *topicState
	records []*storage.Record
	pending []pendingAppend
}

// ApplyBatch implements raft.BatchingFSM. The records of the append entries
// in logs are written with one write per topic; a create or delete entry
// first writes what was gathered before it, so entries take effect in
// order.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	responses := make([]any, len(logs))
	f.mu.Lock()
	defer f.mu.Unlock()
	batches := map[string]*topicBatch{}
	var order []string // topics in batches, in first-append order
	flush := func() {
		for _, name := range order {
			f.writeBatchLocked(batches[name], responses)
		}
		clear(batches)
		order = order[:0]
	}
	// batchOf returns the records gathered for topic t so far in this
	// call, starting its batch at the topic's first append.
	batchOf := func(name string, t *topicState) *topicBatch {
		b := batches[name]
		if b == nil {
			b = &topicBatch{topic: t}
			batches[name] = b
			order = append(order, name)
		}
		return b
	}
	for i, l := range logs {
		f.applied = max(f.applied, l.Index)
		if f.failed != nil {
			responses[i] = applyResult{err: fmt.Errorf("%w: %w", ErrFSMFailed, f.failed)}
			continue
		}
		if l.Type != raft.LogCommand {
			continue // configuration changes: Raft keeps those itself
		}
		cmd, err := decodeCommand(l.Data)
		switch {
		case errors.Is(err, ErrUnknownCommand):
			flush()
			f.failed = fmt.Errorf("raft index %d: %w", l.Index, err)
			f.signalFailed()
			f.logger.Error("unknown command; state machine stopped until restarted with a release that knows it",
				zap.Uint64("raft_index", l.Index), zap.Error(err))
			responses[i] = applyResult{err: fmt.Errorf("%w: %w", ErrFSMFailed, f.failed)}
			continue
		case err != nil:
			responses[i] = applyResult{err: fmt.Errorf("raft index %d: %w", l.Index, err)}
			continue
		}
		switch cmd.kind {
		case kindAppend:
			t, ok := f.topics[cmd.topic]
			if !ok {
				responses[i] = applyResult{err: api.TopicNotFoundError{Topic: cmd.topic}}
				continue
			}
			f.producers.advance(cmd.timestamp)
			responses[i] = f.gatherLocked(batchOf(cmd.topic, t), i, l, cmd)
		case kindProducerAppend:
			t, ok := f.topics[cmd.topic]
			switch {
			case l.Index <= f.meta.applied || (ok && l.Index < t.id):
				// Applied before the table was last written: its records
				// and its producers' state are in.
				responses[i] = applyResult{skipped: true}
				continue
			case !ok:
				responses[i] = applyResult{err: api.TopicNotFoundError{Topic: cmd.topic}}
				continue
			}
			f.producers.advance(cmd.timestamp)
			responses[i] = f.gatherProducedLocked(batchOf(cmd.topic, t), i, l, cmd)
		case kindTruncate:
			flush()
			responses[i] = f.truncateLocked(l.Index, cmd)
		case kindAlterTopic, kindAlterTopicAge:
			flush()
			responses[i] = f.alterTopicLocked(l.Index, cmd)
		case kindCommitOffset:
			flush()
			responses[i] = f.commitOffsetLocked(l.Index, cmd)
		case kindCreateTopic, kindCreateTopicConfig:
			flush()
			responses[i] = f.createTopicLocked(l.Index, cmd.topic, cmd.config)
		case kindDeleteTopic:
			flush()
			responses[i] = f.deleteTopicLocked(l.Index, cmd.topic)
		}
	}
	flush()
	return responses
}

// gatherLocked adds the records of append entry l (response i) to b, or
// returns the entry's response when it has nothing to write.
func (f *fsm) gatherLocked(b *topicBatch, i int, l *raft.Log, cmd command) any {
	for k, v := range cmd.values {
		if n := uint64(len(v)); n > f.maxRecordBytes(b.topic.config) {
			return applyResult{err: fmt.Errorf("%w: record %d of %d has %d bytes, topic %q takes at most %d",
				ErrRecordTooLarge, k, len(cmd.values), n, b.topic.name, f.maxRecordBytes(b.topic.config))}
		}
	}
	var skip uint32
	switch {
	case l.Index < b.topic.id:
		// Replayed after a restart: an append to an earlier topic of the
		// same name, deleted since.
		return applyResult{skipped: true}
	case l.Index < b.topic.lastIndex:
		return applyResult{skipped: true}
	case l.Index == b.topic.lastIndex:
		// The log holds records 0..lastPos of this batch: complete it.
		skip = b.topic.lastPos + 1
		if int(skip) >= len(cmd.values) {
			return applyResult{skipped: true}
		}
		f.logger.Warn("completing a batch cut short by a crash", zap.String("topic", b.topic.name),
			zap.Uint64("raft_index", l.Index), zap.Uint32("had", skip), zap.Int("batch", len(cmd.values)))
	}
	b.pending = append(b.pending, pendingAppend{response: i, records: len(b.records), skip: skip, count: len(cmd.values)})
	for pos := int(skip); pos < len(cmd.values); pos++ {
		b.records = append(b.records, &storage.Record{
			Value: cmd.values[pos], Timestamp: cmd.timestamp, Term: l.Term, EntryIndex: l.Index, BatchPos: uint32(pos),
		})
	}
	return nil // set by writeBatchLocked
}

// writeBatchLocked writes b's records and sets its entries' responses.
func (f *fsm) writeBatchLocked(b *topicBatch, responses []any) {
	if len(b.records) == 0 {
		return
	}
	if f.failed != nil {
		for _, p := range b.pending {
			responses[p.response] = applyResult{err: fmt.Errorf("%w: %w", ErrFSMFailed, f.failed)}
		}
		return
	}
	first, err := b.topic.log.AppendBatch(b.records)
	if err != nil {
		// The log may now hold a prefix of the records: it is behind the
		// entries Raft counts as applied. Stop here; see ErrFSMFailed.
		f.failed = fmt.Errorf("topic %q: %w", b.topic.name, err)
		f.signalFailed()
		f.logger.Error("topic log append failed; state machine stopped until restart",
			zap.String("topic", b.topic.name), zap.Error(err))
		for _, p := range b.pending {
			responses[p.response] = applyResult{err: fmt.Errorf("%w: %w", ErrFSMFailed, f.failed)}
		}
		return
	}
	for _, p := range b.pending {
		if p.runs != nil {
			responses[p.response] = applyResult{runs: p.runs}
			continue
		}
		responses[p.response] = applyResult{first: first + uint64(p.records) - uint64(p.skip), count: p.count}
	}
	last := b.records[len(b.records)-1]
	b.topic.lastIndex, b.topic.lastPos = last.EntryIndex, last.BatchPos
}

// createTopicLocked applies a create-topic entry at index.
func (f *fsm) createTopicLocked(index uint64, name string, cfg TopicConfig) applyResult {
	if index <= f.meta.applied {
		return applyResult{skipped: true}
	}
	if !validTopicName(name) {
		return applyResult{err: api.InvalidTopicNameError{Topic: name}}
	}
	if t, ok := f.topics[name]; ok {
		// Retention and SegmentAge may have been altered since (and a
		// create entry of an earlier release left retention to an alter
		// entry after it): compare what creation fixes.
		if t.config.MaxRecordBytes == cfg.MaxRecordBytes && t.config.SegmentBytes == cfg.SegmentBytes {
			return applyResult{}
		}
		return applyResult{err: api.TopicExistsError{Topic: name}}
	}
	t := topicMeta{name: name, id: index, config: cfg}
	// The table first: a crash before the directory exists leaves a topic
	// whose log the next open creates empty.
	f.topics[name] = &topicState{topicMeta: t}
	if err := f.persistMetaLocked(index); err != nil {
		delete(f.topics, name)
		return f.stopLocked(fmt.Errorf("create topic %q: %w", name, err))
	}
	ts, err := f.openTopic(t)
	if err != nil {
		delete(f.topics, name)
		return f.stopLocked(err)
	}
	f.topics[name] = ts
	f.logger.Info("topic created", zap.String("topic", name), zap.Uint64("id", index))
	return applyResult{}
}

// deleteTopicLocked applies a delete-topic entry at index.
func (f *fsm) deleteTopicLocked(index uint64, name string) applyResult {
	if index <= f.meta.applied {
		return applyResult{skipped: true}
	}
	if name == DefaultTopic {
		return applyResult{err: ErrDefaultTopic}
	}
	t, ok := f.topics[name]
	if !ok {
		return applyResult{err: api.TopicNotFoundError{Topic: name}}
	}
	// The table first: a crash before the directory is gone leaves a
	// stray directory that the next open removes.
	delete(f.topics, name)
	f.producers.forgetTopic(t.id)
	f.forgetTopicOffsetsLocked(name)
	if err := f.persistMetaLocked(index); err != nil {
		f.topics[name] = t
		return f.stopLocked(fmt.Errorf("delete topic %q: %w", name, err))
	}
	if err := t.log.Remove(); err != nil {
		// The topic is gone from the table; its files are left for the
		// next open to remove.
		f.logger.Warn("removing a deleted topic's files failed", zap.String("topic", name), zap.Error(err))
	}
	f.logger.Info("topic deleted", zap.String("topic", name))
	return applyResult{}
}

// signalFailed tells stepDownLoop that the state machine stopped.
func (f *fsm) signalFailed() {
	select {
	case f.failures <- struct{}{}:
	default:
	}
}

// stopLocked stops the state machine after a storage error. Caller holds mu.
func (f *fsm) stopLocked(err error) applyResult {
	f.failed = err
	f.signalFailed()
	f.logger.Error("storage error; state machine stopped until restart", zap.Error(err))
	return applyResult{err: fmt.Errorf("%w: %w", ErrFSMFailed, err)}
}

// Close closes every topic's log.
func (f *fsm) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, t := range f.topics {
		if t.log != nil {
			errs = append(errs, t.log.Close())
		}
	}
	return errors.Join(errs...)
}
