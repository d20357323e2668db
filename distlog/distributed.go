package distlog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
	"go.uber.org/zap"
)

// ErrEmptyBatch is returned by AppendBatch for a batch without records.
var ErrEmptyBatch = fmt.Errorf("distlog: %w", api.ErrEmptyBatch)

// ErrBatchTooLarge is returned by AppendBatch for a batch whose encoding
// exceeds DistributedConfig.MaxBatchBytes; nothing is appended.
var ErrBatchTooLarge = fmt.Errorf("distlog: %w", api.ErrBatchTooLarge)

// DistributedLog is a set of named topics replicated with Raft: every node
// holds the same records at the same offsets in every topic. Writes (appends,
// topic creation and deletion) go through the leader and are acknowledged
// once a majority has stored them and the leader has applied them; reads
// are served from the local topics.
//
// On disk, under the data directory:
//
//	metadata          the metadata table: topics, their config, applied index (see metadata)
//	topics/<id>/      one storage.Log per topic; id is the Raft index that created it (0: DefaultTopic)
//	raft/log/         Raft's log store, a storage.Log keyed by Raft index (see logStore)
//	raft/stable.json  Raft's term and vote (fileStableStore)
//	raft/snapshots/   Raft snapshots (SnapshotStore: hard links to the topics' segments)
//
// A data directory of the previous release (a "log" directory beside
// "raft") is refused with ErrOldDataFormat, and nothing in it is changed.
type DistributedLog struct {
	config    DistributedConfig
	logger    *zap.Logger
	fsm       *fsm
	logStore  *logStore
	stable    *fileStableStore
	snapshots *SnapshotStore
	// transport is Raft's; kept to close its pooled outgoing connections,
	// which Raft's shutdown leaves open.
	transport *raft.NetworkTransport
	raft      *raft.Raft
	// hadState: the data directory held Raft state when the log opened
	// (see HadState).
	hadState bool

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{} // closed by Close
	// loops waits for the goroutines the log owns (retentionLoop, the
	// group-commit proposer).
	loops sync.WaitGroup
	// commits queues appends into shared Raft entries (groupcommit.go).
	commits *groupCommitter
	// committing waits for the group-commit waiter, which ends once Raft
	// has settled the entries in flight (at the latest at its shutdown).
	committing sync.WaitGroup
}

// NewDistributedLog opens (or creates) the replicated log in dataDir and
// starts its Raft server on cfg.Raft.StreamLayer. With cfg.Raft.Bootstrap
// and no Raft state on disk yet, it bootstraps a one-server cluster of
// itself; other nodes are added with Join on the leader. The DistributedLog
// owns the StreamLayer once the configuration is valid: Close closes it, and
// so does a NewDistributedLog that fails part-way, along with whatever else
// it opened.
func NewDistributedLog(dataDir string, cfg DistributedConfig) (d *DistributedLog, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Logger = cfg.Logger.Named("distlog").With(zap.String("node", string(cfg.Raft.LocalID)))
	raftConfig, err := cfg.raftConfig()
	if err != nil {
		return nil, err
	}
	d = &DistributedLog{config: cfg, logger: cfg.Logger, closed: make(chan struct{})}

	undo := []func() error{cfg.Raft.StreamLayer.Close}
	defer func() {
		if err == nil {
			return
		}
		for k := len(undo) - 1; k >= 0; k-- {
			err = errors.Join(err, undo[k]())
		}
	}()

	if fi, err := os.Stat(filepath.Join(dataDir, "log")); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%w: %s holds data format 1 (before topics), which this release can neither read nor upgrade; "+
			"keep running the previous release on it, or move it aside and start this node with an empty data directory "+
			"(it then holds only what the cluster replicates to it)", ErrOldDataFormat, dataDir)
	}
	raftDir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o755); err != nil {
		return nil, fmt.Errorf("distlog: create %s: %w", raftDir, err)
	}
	if d.snapshots, err = NewSnapshotStore(filepath.Join(raftDir, "snapshots"), cfg.Raft.SnapshotRetain, d.logger.Named("snapshots")); err != nil {
		return nil, err
	}
	topicConfig := cfg.Log
	topicConfig.Logger = nil
	topicConfig.Segment.MaxStoreBytes = cfg.TopicSegments.MaxStoreBytes
	topicConfig.Segment.MaxIndexBytes = cfg.TopicSegments.MaxIndexBytes
	topicConfig.Segment.MaxAge = cfg.TopicSegments.MaxAge
	// A topic's roll leaves the fsync of the segment it seals to a
	// goroutine: it would otherwise hold up every entry applied behind it
	// (about 2 ms for a segment written at full speed). Snapshots and the
	// metadata table wait for those fsyncs (Capture.Sync, Log.Sync).
	topicConfig.SyncSealedInBackground = !topicConfig.SyncOnAppend && !topicConfig.Segment.Preallocate
	if d.fsm, err = newFSM(dataDir, topicConfig, d.snapshots, d.logger.Named("fsm")); err != nil {
		return nil, corruptDataError(err, dataDir)
	}
	undo = append(undo, d.fsm.Close)

	storeConfig := cfg.Log
	storeConfig.Logger = d.logger.Named("raftlog")
	storeConfig.MaxRecordBytes = cfg.MaxBatchBytes + logEntryOverhead
	if d.logStore, err = newLogStore(filepath.Join(raftDir, "log"), storeConfig); err != nil {
		return nil, corruptDataError(err, dataDir)
	}
	undo = append(undo, d.logStore.Close)
	if d.stable, err = newFileStableStore(filepath.Join(raftDir, "stable.json")); err != nil {
		return nil, fmt.Errorf("distlog: open raft stable store: %w", err)
	}
	undo = append(undo, d.stable.Close)
	logs := newLogCache(d.logStore, logCacheEntries, logCacheBytes)
	hasState, err := raft.HasExistingState(logs, d.stable, d.snapshots)
	if err != nil {
		return nil, fmt.Errorf("distlog: read raft state: %w", err)
	}
	d.hadState = hasState

	d.sizeRaftConfig(raftConfig)
	d.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &advertisedStreamLayer{StreamLayer: cfg.Raft.StreamLayer, addr: tcpAddr(cfg.Raft.AdvertiseAddr)},
		MaxPool: cfg.Raft.TransportMaxPool,
		Timeout: cfg.Raft.TransportTimeout,
		// One AppendEntries in flight per follower: replication is not
		// pipelined. Group commit keeps one entry in Raft at a time
		// (GroupCommitConfig.MaxInFlight), so a pipeline had nothing to
		// overlap (one write, 64 writers, batches and one stream measured
		// even or better without it), and hashicorp/raft v1.8's pipelined
		// path has two faults: its decoder can stop reading while the
		// transport blocks handing it a response, which stopped
		// replication to that follower for good and hung Shutdown (a relay
		// worked around it before), and it logs the follower's address
		// without the lock under which a Join at a new address changes it
		// (a data race that failed -race runs of
		// TestDistributedLogMembership). 1 is the transport's documented
		// way to skip the pipelined path (raft PR #541).
		MaxRPCsInFlight: 1,
		Logger:          raftConfig.Logger.Named("transport"),
	})
	if d.raft, err = raft.NewRaft(raftConfig, d.fsm, logs, d.stable, d.snapshots, d.transport); err != nil {
		return nil, errors.Join(fmt.Errorf("distlog: start raft: %w", err), d.transport.Close())
	}
	undo = append(undo, func() error { return d.raft.Shutdown().Error() })
	if hl, ok := raftConfig.Logger.(*hclogZap); ok {
		// One line when an unreachable peer answers again; the bridge
		// logged one when it went.
		d.raft.RegisterObserver(peerReturnObserver(hl.peers))
	}

	if cfg.Raft.Bootstrap && !hasState {
		bootstrap := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter,
			ID:       cfg.Raft.LocalID,
			Address:  d.transport.LocalAddr(),
		}}}
		if err := d.raft.BootstrapCluster(bootstrap).Error(); err != nil {
			return nil, fmt.Errorf("distlog: bootstrap raft cluster: %w", err)
		}
	}
	d.loops.Add(3)
	go func() {
		defer d.loops.Done()
		d.retentionLoop(d.closed)
	}()
	go func() {
		defer d.loops.Done()
		d.trailingLoop(d.closed)
	}()
	go func() {
		defer d.loops.Done()
		d.stepDownLoop(d.closed)
	}()
	d.commits = newGroupCommitter(d)
	d.loops.Add(1)
	go func() {
		defer d.loops.Done()
		d.commits.propose(d.closed)
	}()
	d.committing.Add(1)
	go func() {
		defer d.committing.Done()
		d.commits.wait()
	}()
	d.logger.Info("distributed log started",
		zap.String("advertise_addr", cfg.Raft.AdvertiseAddr), zap.Bool("existing_state", hasState),
		zap.Int("topics", len(d.fsm.topicInfos())), zap.Uint64("applied_index", d.fsm.appliedIndex()))
	return d, nil
}

// corruptDataError turns damage found in one of the node's logs at open
// into ErrCorruptData, saying what to do; other errors are returned as
// they are.
func corruptDataError(err error, dataDir string) error {
	if !errors.Is(err, storage.ErrCorrupt) && !errors.Is(err, storage.ErrBadSegmentHeader) {
		return err
	}
	return fmt.Errorf("%w: %w; this is not what a crash leaves (a failing disk or a write from outside proglog), "+
		"and the log holds records the cluster acknowledged, so the node does not start. "+
		"Remove the data directory %s and start the node again with the same name and address, "+
		"joining the running nodes and not bootstrapping: it rejoins the cluster and catches up from the leader "+
		"(by entries, or by snapshot once the leader has compacted its log). "+
		"A cluster of one node has no other copy: keep the directory", ErrCorruptData, err, dataDir)
}

// topicName maps the book's empty topic to DefaultTopic and checks the
// name.
func topicName(topic string) (string, error) {
	if topic == "" {
		return DefaultTopic, nil
	}
	if !validTopicName(topic) {
		return "", api.InvalidTopicNameError{Topic: topic}
	}
	return topic, nil
}

// apply proposes data as one Raft entry and waits for its result.
func (d *DistributedLog) apply(ctx context.Context, data []byte) (applyResult, uint64, error) {
	timeout := d.config.ApplyTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(deadline))
	}
	if err := ctx.Err(); err != nil {
		return applyResult{}, 0, err
	}
	if timeout <= 0 {
		return applyResult{}, 0, context.DeadlineExceeded
	}
	future := d.raft.Apply(data, timeout)
	result, err := d.applyOutcome(future)
	if err != nil {
		return applyResult{}, 0, err
	}
	return result, future.Index(), result.err
}

// AppendBatch appends records to topic ("" is DefaultTopic) at consecutive
// offsets as ONE Raft entry and returns the first offset. Only the records'
// values are used; the leader stamps the batch with the time once, and
// every node stores that timestamp. It fails with api.ErrNotLeader (naming
// the leader when known) on a follower, which never appends locally; with
// api.InvalidTopicNameError, api.TopicNotFoundError, ErrRecordTooLarge,
// ErrBatchTooLarge, ErrNilRecord or ErrEmptyBatch before anything is
// replicated; and with the state machine's error when applying the entry
// failed.
//
// The outcome of an entry is unknown when the leader loses its leadership
// while the entry is in flight: that returns api.ErrNotLeader with
// OutcomeUnknown set, and a client that retries may append the records
// twice (at-least-once). Use
// AppendProduced with a producer id for exactly-once.
func (d *DistributedLog) AppendBatch(ctx context.Context, topic string, records []*api.Record) (uint64, error) {
	if d.isClosed() {
		return 0, ErrClosed
	}
	topic, err := topicName(topic)
	if err != nil {
		return 0, err
	}
	if len(records) == 0 {
		return 0, ErrEmptyBatch
	}
	t, ok := d.fsm.lookup(topic)
	if !ok {
		return 0, api.TopicNotFoundError{Topic: topic}
	}
	limit := d.fsm.maxRecordBytes(t.config)
	values := make([][]byte, len(records))
	lengths := make([]int, len(records))
	for k, r := range records {
		if r == nil {
			return 0, fmt.Errorf("%w: record %d of %d", ErrNilRecord, k, len(records))
		}
		values[k] = r.GetValue()
		lengths[k] = len(values[k])
		if n := uint64(len(values[k])); n > limit {
			return 0, fmt.Errorf("%w: record %d of %d has %d bytes, topic %q takes at most %d",
				ErrRecordTooLarge, k, len(records), n, topic, limit)
		}
	}
	if size := producerAppendCommandSize(topic, 1, lengths); size > d.config.MaxBatchBytes {
		return 0, fmt.Errorf("%w: %d records take %d bytes, MaxBatchBytes is %d",
			ErrBatchTooLarge, len(records), size, d.config.MaxBatchBytes)
	}
	call := &appendCall{ctx: ctx, topic: topic, runs: []producerRun{{records: uint64(len(values))}}, values: values,
		bytes: callBytes(1, lengths), future: &AppendFuture{done: make(chan struct{})}}
	results, err := d.commit(ctx, call)
	if err != nil {
		return 0, err
	}
	if err := results[0].Err; err != nil {
		return 0, err
	}
	return results[0].First, nil
}

// AppendProduced appends the produce calls batches to topic ("" is
// DefaultTopic) as ONE Raft entry and returns each call's outcome, in
// order. A call with a producer id is idempotent (see api.ProducerBatch):
// a retry of one appended before returns the original offsets, Duplicate
// set, and appends nothing; a sequence the producer's state cannot accept
// is an api.SequenceError in that call's result. The other calls of the
// entry are not affected by one refused. Errors that refuse the whole
// entry (not the leader, a bad topic, a record or batch too large, an empty
// call) are returned as the error, as by AppendBatch.
func (d *DistributedLog) AppendProduced(ctx context.Context, topic string, batches []api.ProducerBatch) ([]api.ProducerResult, error) {
	call, err := d.producedCall(ctx, topic, batches)
	if err != nil {
		return nil, err
	}
	return d.commit(ctx, call)
}

// producedCall checks the produce calls batches to topic and makes them
// one call of the group-commit queue.
func (d *DistributedLog) producedCall(ctx context.Context, topic string, batches []api.ProducerBatch) (*appendCall, error) {
	if d.isClosed() {
		return nil, ErrClosed
	}
	topic, err := topicName(topic)
	if err != nil {
		return nil, err
	}
	if len(batches) == 0 {
		return nil, ErrEmptyBatch
	}
	t, ok := d.fsm.lookup(topic)
	if !ok {
		return nil, api.TopicNotFoundError{Topic: topic}
	}
	limit := d.fsm.maxRecordBytes(t.config)
	runs := make([]producerRun, len(batches))
	var values [][]byte
	var lengths []int
	for k, b := range batches {
		if len(b.Records) == 0 {
			return nil, fmt.Errorf("%w: call %d of %d", ErrEmptyBatch, k, len(batches))
		}
		runs[k] = producerRun{producer: b.ProducerID, sequence: b.Sequence, records: uint64(len(b.Records))}
		if b.ProducerID == 0 {
			runs[k].sequence = 0
		}
		for j, r := range b.Records {
			if r == nil {
				return nil, fmt.Errorf("%w: record %d of call %d", ErrNilRecord, j, k)
			}
			if n := uint64(len(r.GetValue())); n > limit {
				return nil, fmt.Errorf("%w: record %d of call %d has %d bytes, topic %q takes at most %d",
					ErrRecordTooLarge, j, k, n, topic, limit)
			}
			values = append(values, r.GetValue())
			lengths = append(lengths, len(r.GetValue()))
		}
	}
	if size := producerAppendCommandSize(topic, len(runs), lengths); size > d.config.MaxBatchBytes {
		return nil, fmt.Errorf("%w: %d records take %d bytes, MaxBatchBytes is %d",
			ErrBatchTooLarge, len(values), size, d.config.MaxBatchBytes)
	}
	return &appendCall{ctx: ctx, topic: topic, runs: runs, values: values, bytes: callBytes(len(runs), lengths),
		future: &AppendFuture{done: make(chan struct{})}}, nil
}

// CommitOffset commits group's offset in topic ("" is DefaultTopic) through
// Raft: the offset of the next record the group will process, at most the
// topic's next offset. Commits are monotonic: a lower offset leaves the
// committed one, unless reset. It returns the offset committed after the
// call. Errors: api.ErrInvalidGroupName, api.InvalidTopicNameError,
// api.TopicNotFoundError, api.ErrOffsetOutOfRange (past the end),
// api.ErrNotLeader.
func (d *DistributedLog) CommitOffset(ctx context.Context, group, topic string, offset uint64, reset bool) (uint64, error) {
	if d.isClosed() {
		return 0, ErrClosed
	}
	if err := api.ValidateGroupName(group); err != nil {
		return 0, err
	}
	topic, err := topicName(topic)
	if err != nil {
		return 0, err
	}
	result, _, err := d.apply(ctx, encodeCommitOffset(group, topic, offset, reset))
	if err != nil {
		return 0, err
	}
	return result.first, nil
}

// FetchOffset returns group's committed offset in topic ("" is
// DefaultTopic) as this node has applied it, or api.ErrGroupNotFound when
// the group has committed none there.
func (d *DistributedLog) FetchOffset(group, topic string) (uint64, error) {
	if err := api.ValidateGroupName(group); err != nil {
		return 0, err
	}
	topic, err := topicName(topic)
	if err != nil {
		return 0, err
	}
	off, ok := d.fsm.committedOffset(group, topic)
	if !ok {
		return 0, fmt.Errorf("group %q, topic %q: %w", group, topic, api.ErrGroupNotFound)
	}
	return off, nil
}

// Groups returns every consumer group with its committed offsets and lag
// per topic, as this node has applied them, sorted by name.
func (d *DistributedLog) Groups() []GroupInfo {
	return d.fsm.groupInfos("")
}

// Group returns one consumer group, or api.ErrGroupNotFound.
func (d *DistributedLog) Group(name string) (GroupInfo, error) {
	if err := api.ValidateGroupName(name); err != nil {
		return GroupInfo{}, err
	}
	groups := d.fsm.groupInfos(name)
	if len(groups) == 0 {
		return GroupInfo{}, fmt.Errorf("group %q: %w", name, api.ErrGroupNotFound)
	}
	return groups[0], nil
}

// CreateTopic creates topic name with cfg through Raft. Creating a topic
// that exists with the same cfg does nothing (nil); with another cfg it
// fails with api.TopicExistsError (on a follower, with api.ErrNotLeader,
// like any create there: only the leader's view is current). The topic is usable on this node when it
// returns. A SegmentAge below MinTopicSegmentAge is ErrInvalidTopicConfig;
// a topic with a SegmentAge or retention is created by an entry of a kind
// the release before does not know (upgrade every node first).
func (d *DistributedLog) CreateTopic(ctx context.Context, name string, cfg TopicConfig) error {
	if d.isClosed() {
		return ErrClosed
	}
	if !validTopicName(name) {
		return api.InvalidTopicNameError{Topic: name}
	}
	if cfg.MaxRecordBytes > d.config.Log.MaxRecordBytes {
		return fmt.Errorf("%w: MaxRecordBytes = %d, the cluster takes at most %d",
			ErrInvalidTopicConfig, cfg.MaxRecordBytes, d.config.Log.MaxRecordBytes)
	}
	if cfg.SegmentBytes != 0 && cfg.SegmentBytes < storage.SegmentHeaderBytes+1 {
		return fmt.Errorf("%w: SegmentBytes = %d is too small", ErrInvalidTopicConfig, cfg.SegmentBytes)
	}
	if err := validateSegmentAge(cfg.SegmentAge); err != nil {
		return err
	}
	// Only the leader answers "exists with another configuration" without
	// a Raft round: a follower may not have applied the entry that set the
	// rest of the topic's configuration yet (retention comes in a second
	// entry), so it leaves the answer to the leader (apply: ErrNotLeader).
	if t, ok := d.fsm.lookup(name); ok && d.raft.State() == raft.Leader {
		d.fsm.mu.RLock()
		same := t.config == cfg
		d.fsm.mu.RUnlock()
		if !same {
			return api.TopicExistsError{Topic: name}
		}
	}
	// One entry, retention included: a topic never exists without it.
	_, _, err := d.apply(ctx, encodeCreateTopic(name, cfg))
	return err
}

// DeleteTopic deletes topic name and its records through Raft. It fails
// with api.TopicNotFoundError for a topic that does not exist and with
// ErrDefaultTopic for DefaultTopic. Readers waiting on the topic's Appended
// channel are woken.
func (d *DistributedLog) DeleteTopic(ctx context.Context, name string) error {
	if d.isClosed() {
		return ErrClosed
	}
	if !validTopicName(name) {
		return api.InvalidTopicNameError{Topic: name}
	}
	if name == DefaultTopic {
		return ErrDefaultTopic
	}
	_, _, err := d.apply(ctx, encodeDeleteTopic(name))
	return err
}

// Topics returns every topic as this node has applied them, sorted by
// name.
func (d *DistributedLog) Topics() []TopicInfo {
	return d.fsm.topicInfos()
}

// Topic returns topic name ("" is DefaultTopic) as this node has applied
// it, or api.TopicNotFoundError.
func (d *DistributedLog) Topic(name string) (TopicInfo, error) {
	name, err := topicName(name)
	if err != nil {
		return TopicInfo{}, err
	}
	d.fsm.mu.RLock()
	defer d.fsm.mu.RUnlock()
	t, ok := d.fsm.topics[name]
	if !ok || t.log == nil {
		return TopicInfo{}, api.TopicNotFoundError{Topic: name}
	}
	return d.fsm.infoLocked(t), nil
}

// raftError translates an error from Raft into the package's errors.
func (d *DistributedLog) raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrNotVoter):
		addr, id := d.leaderWithID()
		// Lost while in flight, the entry may be in the new leader's log
		// and committed there; the other errors come before it is
		// appended anywhere.
		return api.ErrNotLeader{LeaderID: string(id), LeaderAddr: string(addr),
			OutcomeUnknown: errors.Is(err, raft.ErrLeadershipLost)}
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	default:
		return fmt.Errorf("distlog: raft: %w", err)
	}
}

// Read returns the record at offset of topic ("" is DefaultTopic) from
// this node, as the client sees it (value and offset). An offset this node
// does not hold yet may be committed but not yet applied here (a client
// that wrote through the leader and reads from a follower), so Read waits
// for it, up to DistributedConfig.ReadWaitTimeout, before it fails with
// api.ErrOffsetOutOfRange. It does not wait for an offset below the lowest
// one, nor on a leader that has applied its whole log (nothing more can be
// acknowledged there without it knowing). A cancelled ctx ends the wait
// with ctx's error. A topic this node does not have is
// api.TopicNotFoundError, after the same wait for its creation.
func (d *DistributedLog) Read(ctx context.Context, topic string, offset uint64) (*api.Record, error) {
	var record *api.Record
	err := d.readWaiting(ctx, topic, offset, func(l *storage.Log) error {
		r, err := l.Read(offset)
		if err == nil {
			record = &api.Record{Value: r.Value, Offset: r.Offset}
		}
		return err
	})
	return record, err
}

// ReadBatch returns the records of topic from offset on, as Read returns
// one: at most maxRecords of them (less than 1 reads one) and no more than
// maxBytes of values in all, except that the first record comes whatever
// its size. It reads with the topic's sequential reader
// (storage.Log.ReadBatch), which takes the log's lock once per batch, not
// per record, and reads each segment's frames in one pread. It never waits
// to fill a batch: it returns what this node holds from offset on, and
// waits, as Read does and as long, only when it holds not even offset.
// Below the lowest offset is api.ErrOffsetOutOfRange with BelowLowest.
func (d *DistributedLog) ReadBatch(ctx context.Context, topic string, offset uint64, maxRecords int, maxBytes uint64) ([]*api.Record, error) {
	var records []*api.Record
	err := d.readWaiting(ctx, topic, offset, func(l *storage.Log) error {
		batch, err := l.ReadBatch(offset, maxRecords, maxBytes)
		if err != nil {
			return err
		}
		// One allocation for the batch's records rather than one each.
		views := make([]api.Record, len(batch))
		records = make([]*api.Record, len(batch))
		for k := range batch {
			views[k].Value, views[k].Offset = batch[k].Value, batch[k].Offset
			records[k] = &views[k]
		}
		return nil
	})
	return records, err
}

// readWaiting runs read on topic's log once this node can serve offset:
// it waits (bounded by DistributedConfig.ReadWaitTimeout, see Read) for
// the topic and the offset to arrive, and turns the log's errors into the
// client's (out of range, below the lowest offset, topic not found,
// replica unavailable). read returns the storage.Log's error for offset.
func (d *DistributedLog) readWaiting(ctx context.Context, topic string, offset uint64, read func(*storage.Log) error) error {
	topic, err := topicName(topic)
	if err != nil {
		return err
	}
	var timer *time.Timer
	wait := func(changed <-chan struct{}, err error) error {
		if timer == nil {
			timer = time.NewTimer(d.config.ReadWaitTimeout)
		}
		select {
		case <-changed:
			return nil
		case <-timer.C:
			return err
		case <-ctx.Done():
			return fmt.Errorf("distlog: read %d: %w", offset, ctx.Err())
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		t, ok, topicsChanged := d.fsm.lookupOrWait(topic)
		if !ok {
			// The topic may be created by an entry committed but not yet
			// applied here (a client that created it through the leader
			// and reads from a follower).
			notFound := api.TopicNotFoundError{Topic: topic}
			if !d.mayArrive() {
				return notFound
			}
			if err := wait(topicsChanged, notFound); err != nil {
				return err
			}
			continue
		}
		changed := t.log.Appended() // taken before the read: no append slips between
		if lowest := d.fsm.lowestOf(t); offset < lowest {
			return api.ErrOffsetOutOfRange{Offset: offset, BelowLowest: true, Lowest: lowest}
		}
		err := read(t.log)
		if err == nil {
			return nil
		}
		if errors.Is(err, storage.ErrClosed) {
			// The topic was deleted or replaced by a snapshot: look again.
			if d.isClosed() {
				return ErrClosed
			}
			if current, ok := d.fsm.lookup(topic); ok && current != t {
				continue
			}
			return api.TopicNotFoundError{Topic: topic}
		}
		var outOfRange api.ErrOffsetOutOfRange
		if !errors.As(err, &outOfRange) {
			// An I/O error (a full disk) or a record that fails its
			// checksum: this copy cannot serve the read, another node's
			// may. The client learns that much; the cause, with file
			// paths, stays in this node's log.
			d.logger.Error("read failed", zap.String("topic", topic), zap.Uint64("offset", offset), zap.Error(err))
			return fmt.Errorf("distlog: read %s@%d: %w", topic, offset, api.ErrReplicaUnavailable)
		}
		if !d.mayArrive() {
			return err
		}
		if lowest, lowErr := t.log.LowestOffset(); lowErr != nil || offset < lowest {
			return err
		}
		if err := wait(changed, err); err != nil {
			return err
		}
	}
}

// mayArrive reports whether an entry this node has not applied yet may
// still come through Raft: not on a closed node, nor on a leader that has
// applied its whole log (nothing more can be acknowledged there without it
// knowing).
func (d *DistributedLog) mayArrive() bool {
	if d.isClosed() {
		return false
	}
	return d.raft.State() != raft.Leader || d.raft.AppliedIndex() < d.raft.LastIndex()
}

// Appended returns a channel closed at topic's next change on this node
// (an append, a restore from a snapshot, its deletion, or Close); see
// storage.Log.Appended. For a topic this node does not have, the channel
// is closed already (a reader then reads again and meets
// TopicNotFoundError).
func (d *DistributedLog) Appended(topic string) <-chan struct{} {
	name, err := topicName(topic)
	if err == nil {
		if t, ok := d.fsm.lookup(name); ok && t.log != nil {
			return t.log.Appended()
		}
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// Join adds the server id at addr (its Raft and RPC address) to the cluster
// as a voter. Only the leader can: elsewhere it returns api.ErrNotLeader,
// which a membership handler running on every node may ignore. It is
// idempotent; a known id at a new address has its address replaced, and a
// different id at the same address (a node that came back with a new
// identity) is removed first.
func (d *DistributedLog) Join(id, addr string) error {
	if d.isClosed() {
		return ErrClosed
	}
	configFuture := d.raft.GetConfiguration()
	if err := configFuture.Error(); err != nil {
		return d.raftError(err)
	}
	serverID, serverAddr := raft.ServerID(id), raft.ServerAddress(addr)
	for _, srv := range configFuture.Configuration().Servers {
		switch {
		case srv.ID == serverID && srv.Address == serverAddr:
			return nil
		case srv.ID != serverID && srv.Address == serverAddr:
			if err := d.raft.RemoveServer(srv.ID, 0, d.config.ApplyTimeout).Error(); err != nil {
				return d.raftError(err)
			}
			d.logger.Info("removed server replaced at its address", zap.String("id", string(srv.ID)), zap.String("addr", addr))
		}
	}
	// AddVoter updates the address of an id Raft already knows.
	if err := d.raft.AddVoter(serverID, serverAddr, 0, d.config.ApplyTimeout).Error(); err != nil {
		return d.raftError(err)
	}
	d.logger.Info("server joined", zap.String("id", id), zap.String("addr", addr))
	return nil
}

// Leave removes the server id from the cluster. Only the leader can (see
// Join); leaving an id that is not a member does nothing.
func (d *DistributedLog) Leave(id string) error {
	if d.isClosed() {
		return ErrClosed
	}
	configFuture := d.raft.GetConfiguration()
	if err := configFuture.Error(); err != nil {
		return d.raftError(err)
	}
	member := false
	for _, srv := range configFuture.Configuration().Servers {
		member = member || srv.ID == raft.ServerID(id)
	}
	if !member {
		return nil
	}
	if err := d.raft.RemoveServer(raft.ServerID(id), 0, d.config.ApplyTimeout).Error(); err != nil {
		return d.raftError(err)
	}
	d.logger.Info("server left", zap.String("id", id))
	return nil
}

// WaitForLeader blocks until this node knows a leader (itself or another),
// ctx ends, or the log is closed. It waits on Raft's leader observations,
// without polling.
func (d *DistributedLog) WaitForLeader(ctx context.Context) error {
	observations := make(chan raft.Observation, 1)
	observer := raft.NewObserver(observations, false, func(o *raft.Observation) bool {
		// State changes too: a candidate that raft left with a stale
		// leader (see leaderWithID) knows a leader again when it turns
		// follower, with no new LeaderObservation.
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		default:
			return false
		}
	})
	d.raft.RegisterObserver(observer)
	defer d.raft.DeregisterObserver(observer)
	for {
		if addr, _ := d.leaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-observations:
		case <-ctx.Done():
			return fmt.Errorf("distlog: wait for leader: %w", ctx.Err())
		case <-d.closed:
			return ErrClosed
		}
	}
}

// GetServers returns every server of the Raft configuration with its RPC
// address and whether it is the leader this node knows of.
func (d *DistributedLog) GetServers() ([]*api.Server, error) {
	if d.isClosed() {
		return nil, ErrClosed
	}
	configFuture := d.raft.GetConfiguration()
	if err := configFuture.Error(); err != nil {
		return nil, d.raftError(err)
	}
	_, leaderID := d.leaderWithID()
	var servers []*api.Server
	for _, srv := range configFuture.Configuration().Servers {
		servers = append(servers, &api.Server{
			Id:       string(srv.ID),
			RpcAddr:  string(srv.Address),
			IsLeader: leaderID != "" && srv.ID == leaderID,
		})
	}
	return servers, nil
}

// IsLeader reports whether this node is the Raft leader.
func (d *DistributedLog) IsLeader() bool {
	return d.raft.State() == raft.Leader
}

// Leader returns the id and address of the leader this node knows of, both
// empty when it knows none.
func (d *DistributedLog) Leader() (id, addr string) {
	a, i := d.leaderWithID()
	return string(i), string(a)
}

// leaderWithID is Raft's LeaderWithID, but empty on a Candidate: raft can
// leave the ID of the leader that was on a node that became candidate by a
// leadership transfer (its AppendEntries of the same term set it without
// ending the candidacy), and nothing clears it while the election fails, so
// a node campaigning in vain would go on naming a leader that may be dead.
// A candidate knows no leader.
func (d *DistributedLog) leaderWithID() (raft.ServerAddress, raft.ServerID) {
	if d.raft.State() == raft.Candidate {
		return "", ""
	}
	return d.raft.LeaderWithID()
}

// State returns this node's Raft state: "Follower", "Candidate", "Leader" or
// "Shutdown".
func (d *DistributedLog) State() string {
	return d.raft.State().String()
}

// AppliedIndex returns the Raft index of the last entry applied to the
// state machine on this node.
func (d *DistributedLog) AppliedIndex() uint64 {
	return d.raft.AppliedIndex()
}

// Stats is a point-in-time view of a node's replication state, for metrics
// and health checks.
type Stats struct {
	State         string // Raft state, see State
	Term          uint64 // current Raft term
	LastIndex     uint64 // last Raft index in the log store
	CommitIndex   uint64 // last Raft index known committed
	AppliedIndex  uint64 // last Raft index applied to the state machine
	LastContact   time.Time
	NextOffset    uint64 // next offset of DefaultTopic on this node
	SnapshotIndex uint64 // Raft index of the last snapshot (0: none)
	// FSMError is the storage error that stopped the state machine (see
	// ErrFSMFailed), nil while it is healthy.
	FSMError error
}

// Stats returns this node's replication state.
func (d *DistributedLog) Stats() Stats {
	raw := d.raft.Stats()
	snapshotIndex, _ := strconv.ParseUint(raw["last_snapshot_index"], 10, 64)
	return Stats{
		State:         d.raft.State().String(),
		Term:          d.raft.CurrentTerm(),
		LastIndex:     d.raft.LastIndex(),
		CommitIndex:   d.raft.CommitIndex(),
		AppliedIndex:  d.raft.AppliedIndex(),
		LastContact:   d.raft.LastContact(),
		NextOffset:    d.defaultNextOffset(),
		SnapshotIndex: snapshotIndex,
		FSMError:      d.fsm.Err(),
	}
}

// defaultNextOffset is DefaultTopic's next offset on this node.
func (d *DistributedLog) defaultNextOffset() uint64 {
	if t, ok := d.fsm.lookup(DefaultTopic); ok && t.log != nil {
		return t.log.NextOffset()
	}
	return 0
}

// Raft returns the underlying Raft server, for observers and diagnostics.
// Callers must not shut it down or change its configuration behind the
// DistributedLog's back.
func (d *DistributedLog) Raft() *raft.Raft {
	return d.raft
}

func (d *DistributedLog) isClosed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}

// Close shuts Raft down (which closes the StreamLayer and the connections
// it accepted), then closes the stores and the data log. A leader first
// hands its leadership to an up-to-date follower, so the cluster elects a
// new leader at once instead of after a heartbeat timeout. Close does not
// leave the cluster: call Leave on the leader for that. It is idempotent.
func (d *DistributedLog) Close() error {
	d.closeOnce.Do(func() {
		close(d.closed)
		d.loops.Wait()
		d.transferLeadership()
		errs := []error{d.raft.Shutdown().Error()}
		// Raft's shutdown has settled every entry in flight.
		d.committing.Wait()
		d.transport.CloseStreams()
		errs = append(errs, d.logStore.Close(), d.stable.Close(), d.fsm.Close())
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// HadState reports whether the data directory held Raft state when the log
// opened: this node was part of a cluster before, whose members may be
// restarting too.
func (d *DistributedLog) HadState() bool { return d.hadState }

// HandOverLeadership makes another voter the leader when this node leads
// and has one, so that a node about to stop does not leave the cluster to
// wait out an election. It is a no-op on a follower or a single-node
// cluster; a failed transfer only costs the cluster a normal election.
func (d *DistributedLog) HandOverLeadership() {
	if d.isClosed() {
		return
	}
	d.transferLeadership()
}

// transferLeadership hands leadership to another voter when this node
// leads and has one; Raft bounds the attempt by its election timeout. A
// failure only costs the cluster a normal election.
func (d *DistributedLog) transferLeadership() {
	if d.raft.State() != raft.Leader {
		return
	}
	configFuture := d.raft.GetConfiguration()
	if configFuture.Error() != nil {
		return
	}
	voters := 0
	for _, srv := range configFuture.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < 2 {
		return
	}
	if err := d.raft.LeadershipTransfer().Error(); err != nil {
		d.logger.Warn("leadership transfer before shutdown failed", zap.Error(err))
		return
	}
	d.logger.Info("handed leadership over before shutdown")
}

// advertisedStreamLayer reports the advertised address to Raft instead of
// the listener's, which may be unspecified ([::]:8400).
type advertisedStreamLayer struct {
	*StreamLayer
	addr net.Addr
}

// Addr implements net.Listener.
func (s *advertisedStreamLayer) Addr() net.Addr { return s.addr }

// tcpAddr is a host:port string as a net.Addr.
type tcpAddr string

// Network implements net.Addr.
func (a tcpAddr) Network() string { return "tcp" }

// String implements net.Addr.
func (a tcpAddr) String() string { return string(a) }
