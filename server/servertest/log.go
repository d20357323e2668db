// Package servertest ships an in-memory server.CommitLog for tests of the
// server and of the packages built on it, as hashicorp/raft ships
// InmemStore beside its LogStore interface: one well-tested fake instead of
// one per test file. It imports only api/v1 (not server), so that the
// server's own in-package tests can use it.
package servertest

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	api "github.com/proglog/proglog/api/v1"
)

// Log is an in-memory server.CommitLog of named topics, each with records at
// offsets 0, 1, 2, … and the CommitLog contract's semantics (contiguous
// batches, out-of-range reads as api.ErrOffsetOutOfRange, Appended closed at
// each change of the topic, unknown topics as api.TopicNotFoundError, topic
// names checked as the real log checks them). A new Log holds the default
// topic, empty, as every cluster does. Options add the hooks tests need:
// gating or failing appends and reads, and records carrying replication
// bookkeeping. It counts the calls it receives. Safe for concurrent use.
type Log struct {
	appendHook  func(ctx context.Context, records []*api.Record) error
	readHook    func(ctx context.Context, offset uint64) error
	bookkeeping bool

	reads         atomic.Int64
	appends       atomic.Int64
	appendedCalls atomic.Int64

	mu     sync.Mutex
	topics map[string]*topic // guarded by mu
	// producers is the idempotent producers' state, guarded by mu.
	producers map[uint64]*producer
	// offsets are the consumer groups' committed offsets by group, then
	// topic; guarded by mu.
	offsets map[string]map[string]uint64
}

// producer is an idempotent producer's last sequence and the outcomes of
// its last ProducerWindow calls.
type producer struct {
	last  uint64
	calls map[uint64]producedCall
}

// producedCall is where an idempotent producer's call went.
type producedCall struct {
	topic        string
	first, count uint64
}

// ProducerWindow is how many of a producer's last calls Log remembers, as
// the real log does by default.
const ProducerWindow = 5

// topic is one topic's state; its fields are guarded by Log.mu.
type topic struct {
	config  *api.TopicConfig
	records []*api.Record
	// appended is closed at the topic's next append or at its deletion,
	// then replaced.
	appended chan struct{}
}

// Option configures a Log.
type Option func(*Log)

// WithAppendHook runs hook at the start of every AppendBatch, before
// anything is appended: a hook that returns an error fails the call with it
// and appends nothing; a hook may also block (to hold appends until a test
// lets them through) or count.
func WithAppendHook(hook func(ctx context.Context, records []*api.Record) error) Option {
	return func(l *Log) { l.appendHook = hook }
}

// WithReadHook runs hook at the start of every Read: an error fails the
// read with it.
func WithReadHook(hook func(ctx context.Context, offset uint64) error) Option {
	return func(l *Log) { l.readHook = hook }
}

// FailWith fails every AppendBatch and Read with err.
func FailWith(err error) Option {
	return func(l *Log) {
		l.appendHook = func(context.Context, []*api.Record) error { return err }
		l.readHook = func(context.Context, uint64) error { return err }
	}
}

// WithBookkeeping makes the records Read returns carry bookkeeping in the
// fields a client never owns (term and type, where the book's replication
// layer kept it): the server must never let it reach a client.
func WithBookkeeping() Option {
	return func(l *Log) { l.bookkeeping = true }
}

// NewLog returns a Log holding the empty default topic, with opts applied.
func NewLog(opts ...Option) *Log {
	l := &Log{topics: map[string]*topic{api.DefaultTopic: newTopic(nil)}, producers: map[uint64]*producer{}, offsets: map[string]map[string]uint64{}}
	for _, opt := range opts {
		opt(l)
	}
	return l
}

func newTopic(config *api.TopicConfig) *topic {
	if config == nil {
		config = &api.TopicConfig{}
	}
	return &topic{config: proto.Clone(config).(*api.TopicConfig), appended: make(chan struct{})}
}

// topicLocked returns the named topic, an api.InvalidTopicNameError for a
// name the real log would refuse, or an api.TopicNotFoundError. Callers hold
// l.mu.
func (l *Log) topicLocked(name string) (*topic, error) {
	if err := api.ValidateTopicName(name); err != nil {
		return nil, err
	}
	t, ok := l.topics[name]
	if !ok {
		return nil, api.TopicNotFoundError{Topic: name}
	}
	return t, nil
}

// AppendBatch appends records to topicName contiguously and returns the
// first's offset. It stores a copy of each record's value only, with its
// offset. A call whose context has ended appends nothing and returns the
// context's error.
func (l *Log) AppendBatch(ctx context.Context, topicName string, records []*api.Record) (uint64, error) {
	l.appends.Add(1)
	if l.appendHook != nil {
		if err := l.appendHook(ctx, records); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(records) == 0 {
		return 0, api.ErrEmptyBatch
	}
	for _, r := range records {
		if r == nil {
			return 0, api.ErrNoRecord
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.topicLocked(topicName)
	if err != nil {
		return 0, err
	}
	return l.appendLocked(t, records), nil
}

// appendLocked appends records to t and returns the first's offset.
// Callers hold l.mu.
func (l *Log) appendLocked(t *topic, records []*api.Record) uint64 {
	first := uint64(len(t.records))
	for i, r := range records {
		stored := &api.Record{Value: append([]byte(nil), r.GetValue()...), Offset: first + uint64(i)}
		if l.bookkeeping {
			stored.Term, stored.Type = 2, uint32(i)+1
		}
		t.records = append(t.records, stored)
	}
	close(t.appended)
	t.appended = make(chan struct{})
	return first
}

// AppendProduced appends each call of batches to topicName in order with
// the real log's idempotent-producer rules (see api.ProducerBatch): an
// unknown producer starts at any sequence, the next sequence is appended, a
// retry of one of the last ProducerWindow calls gets its offsets
// (Duplicate), and anything else is an api.SequenceError. Producers never
// expire. The append hook sees every call's records together.
func (l *Log) AppendProduced(ctx context.Context, topicName string, batches []api.ProducerBatch) ([]api.ProducerResult, error) {
	l.appends.Add(1)
	var all []*api.Record
	for _, b := range batches {
		all = append(all, b.Records...)
	}
	if l.appendHook != nil {
		if err := l.appendHook(ctx, all); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(batches) == 0 {
		return nil, api.ErrEmptyBatch
	}
	for _, b := range batches {
		if len(b.Records) == 0 {
			return nil, api.ErrEmptyBatch
		}
		for _, r := range b.Records {
			if r == nil {
				return nil, api.ErrNoRecord
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.topicLocked(topicName)
	if err != nil {
		return nil, err
	}
	results := make([]api.ProducerResult, len(batches))
	for k, b := range batches {
		p := l.producers[b.ProducerID]
		switch {
		case b.ProducerID == 0:
		case p == nil:
			p = &producer{calls: map[uint64]producedCall{}}
			l.producers[b.ProducerID] = p
		case b.Sequence == p.last+1:
		case b.Sequence > p.last:
			results[k].Err = api.SequenceError{ProducerID: b.ProducerID, Sequence: b.Sequence, Expected: p.last + 1}
			continue
		default:
			c, ok := p.calls[b.Sequence]
			if !ok || c.topic != topicName {
				results[k].Err = api.SequenceError{ProducerID: b.ProducerID, Sequence: b.Sequence, Expected: p.last + 1,
					TooOld: !ok, OtherTopic: ok}
				continue
			}
			results[k] = api.ProducerResult{First: c.first, Count: c.count, Duplicate: true}
			continue
		}
		first := l.appendLocked(t, b.Records)
		results[k] = api.ProducerResult{First: first, Count: uint64(len(b.Records))}
		if p != nil {
			p.last = b.Sequence
			p.calls[b.Sequence] = producedCall{topic: topicName, first: first, count: uint64(len(b.Records))}
			delete(p.calls, b.Sequence-ProducerWindow)
		}
	}
	return results, nil
}

// Read returns the record at offset in topicName, or
// api.ErrOffsetOutOfRange. The caller must not modify it. It is a batch of
// one: the same hook and read count as ReadBatch.
func (l *Log) Read(ctx context.Context, topicName string, offset uint64) (*api.Record, error) {
	records, err := l.ReadBatch(ctx, topicName, offset, 1, 0)
	if err != nil {
		return nil, err
	}
	return records[0], nil
}

// ReadBatch returns the records of topicName from offset on: at most
// maxRecords (at least one) and maxBytes of values in all, the first
// whatever its size; api.ErrOffsetOutOfRange when it holds not even
// offset. It runs the read hook once, for offset, and counts one read. The
// caller must not modify the records.
func (l *Log) ReadBatch(ctx context.Context, topicName string, offset uint64, maxRecords int, maxBytes uint64) ([]*api.Record, error) {
	l.reads.Add(1)
	if l.readHook != nil {
		if err := l.readHook(ctx, offset); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.topicLocked(topicName)
	if err != nil {
		return nil, err
	}
	if offset >= uint64(len(t.records)) {
		return nil, api.ErrOffsetOutOfRange{Offset: offset}
	}
	var out []*api.Record
	var bytes uint64
	for _, record := range t.records[offset:] {
		if len(out) == max(1, maxRecords) || len(out) > 0 && bytes+uint64(len(record.GetValue())) > maxBytes {
			break
		}
		out = append(out, record)
		bytes += uint64(len(record.GetValue()))
	}
	return out, nil
}

// Appended returns a channel closed at topicName's next append or deletion;
// for a topic that does not exist, a channel that is already closed.
func (l *Log) Appended(topicName string) <-chan struct{} {
	l.appendedCalls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.topics[topicName]
	if !ok {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return t.appended
}

// CreateTopic creates a topic (nil config: the defaults); again with an
// equal config it does nothing, with another it returns an
// api.TopicExistsError.
func (l *Log) CreateTopic(ctx context.Context, name string, config *api.TopicConfig) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := api.ValidateTopicName(name); err != nil {
		return err
	}
	if config == nil {
		config = &api.TopicConfig{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.topics[name]; ok {
		if proto.Equal(t.config, config) {
			return nil
		}
		return api.TopicExistsError{Topic: name}
	}
	l.topics[name] = newTopic(config)
	return nil
}

// AlterTopic sets topic name's retention fields and segment age to
// config's.
func (l *Log) AlterTopic(ctx context.Context, name string, config *api.TopicConfig) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.topicLocked(name)
	if err != nil {
		return err
	}
	t.config.RetentionBytes, t.config.RetentionAgeMs = config.GetRetentionBytes(), config.GetRetentionAgeMs()
	t.config.SegmentAgeMs = config.GetSegmentAgeMs()
	return nil
}

// DeleteTopic deletes a topic and wakes its waiting readers. The default
// topic cannot be deleted (api.ErrDeleteDefaultTopic), as in the real log.
func (l *Log) DeleteTopic(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.topicLocked(name)
	if err != nil {
		return err
	}
	if name == api.DefaultTopic {
		return api.ErrDeleteDefaultTopic
	}
	delete(l.topics, name)
	close(t.appended)
	return nil
}

// ListTopics describes every topic, sorted by name.
func (l *Log) ListTopics(ctx context.Context) ([]*api.TopicInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	infos := make([]*api.TopicInfo, 0, len(l.topics))
	for name, t := range l.topics {
		infos = append(infos, t.infoLocked(name))
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].GetName() < infos[j].GetName() })
	return infos, nil
}

// DescribeTopic describes one topic.
func (l *Log) DescribeTopic(ctx context.Context, name string) (*api.TopicInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.topicLocked(name)
	if err != nil {
		return nil, err
	}
	return t.infoLocked(name), nil
}

// infoLocked describes t: one segment, bytes counting values only.
func (t *topic) infoLocked(name string) *api.TopicInfo {
	info := &api.TopicInfo{
		Name:       name,
		Config:     proto.Clone(t.config).(*api.TopicConfig),
		NextOffset: uint64(len(t.records)),
		Records:    uint64(len(t.records)),
		Segments:   1,
	}
	if n := len(t.records); n > 0 {
		info.HighestOffset = uint64(n - 1)
	}
	for _, r := range t.records {
		info.Bytes += uint64(len(r.GetValue()))
	}
	return info
}

// Len returns the number of records topicName holds (0 when there is no
// such topic).
func (l *Log) Len(topicName string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.topics[topicName]; ok {
		return len(t.records)
	}
	return 0
}

// Reads returns how many times Read was called.
func (l *Log) Reads() int64 { return l.reads.Load() }

// Appends returns how many times AppendBatch was called.
func (l *Log) Appends() int64 { return l.appends.Load() }

// AppendedCalls returns how many times Appended was called.
func (l *Log) AppendedCalls() int64 { return l.appendedCalls.Load() }

// CommitOffset commits group's offset in topicName with the real log's
// rules: monotonic unless reset, never past the topic's end.
func (l *Log) CommitOffset(ctx context.Context, group, topicName string, offset uint64, reset bool) (uint64, error) {
	if err := api.ValidateGroupName(group); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.topicLocked(topicName)
	if err != nil {
		return 0, err
	}
	if offset > uint64(len(t.records)) {
		return 0, api.ErrOffsetOutOfRange{Offset: offset}
	}
	g := l.offsets[group]
	if g == nil {
		g = map[string]uint64{}
		l.offsets[group] = g
	}
	if cur, ok := g[topicName]; ok && offset < cur && !reset {
		return cur, nil
	}
	g[topicName] = offset
	return offset, nil
}

// FetchOffset returns group's committed offset in topicName, or
// api.ErrGroupNotFound.
func (l *Log) FetchOffset(ctx context.Context, group, topicName string) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	off, ok := l.offsets[group][topicName]
	if !ok {
		return 0, api.ErrGroupNotFound
	}
	return off, nil
}

// ListGroups describes every group, sorted by name.
func (l *Log) ListGroups(ctx context.Context) ([]*api.GroupInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.offsets))
	for name := range l.offsets {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]*api.GroupInfo, 0, len(names))
	for _, name := range names {
		out = append(out, l.groupLocked(name))
	}
	return out, nil
}

// DescribeGroup describes group, or returns api.ErrGroupNotFound.
func (l *Log) DescribeGroup(ctx context.Context, group string) (*api.GroupInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.offsets[group]) == 0 {
		return nil, api.ErrGroupNotFound
	}
	return l.groupLocked(group), nil
}

// groupLocked describes group. Callers hold l.mu.
func (l *Log) groupLocked(group string) *api.GroupInfo {
	g := &api.GroupInfo{Name: group}
	topics := make([]string, 0, len(l.offsets[group]))
	for name := range l.offsets[group] {
		topics = append(topics, name)
	}
	sort.Strings(topics)
	for _, name := range topics {
		off := l.offsets[group][name]
		gt := &api.GroupTopic{Topic: name, Committed: off}
		if t, ok := l.topics[name]; ok {
			gt.NextOffset = uint64(len(t.records))
			if gt.NextOffset > off {
				gt.Lag = gt.NextOffset - off
			}
		}
		g.Topics = append(g.Topics, gt)
	}
	return g
}
