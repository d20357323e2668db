// Package servertest ships an in-memory server.CommitLog for tests of the
// server and of the packages built on it, as hashicorp/raft ships
// InmemStore beside its LogStore interface: one well-tested fake instead of
// one per test file. It imports only api/v1 (not server), so that the
// server's own in-package tests can use it.
package servertest

import (
	"context"
	"sync"
	"sync/atomic"

	api "github.com/proglog/proglog/api/v1"
)

// Log is an in-memory server.CommitLog: records at offsets 0, 1, 2, … with
// the CommitLog contract's semantics (contiguous batches, out-of-range reads
// as api.ErrOffsetOutOfRange, Appended closed at each change). Options add
// the hooks tests need: gating or failing appends and reads, and records
// carrying replication bookkeeping. It counts the calls it receives. Safe for
// concurrent use.
type Log struct {
	appendHook  func(ctx context.Context, records []*api.Record) error
	readHook    func(ctx context.Context, offset uint64) error
	bookkeeping bool

	reads         atomic.Int64
	appends       atomic.Int64
	appendedCalls atomic.Int64

	// mu guards records and appended; appended is closed and replaced at
	// every append.
	mu       sync.Mutex
	records  []*api.Record
	appended chan struct{}
}

// Option configures a Log.
type Option func(*Log)

// WithAppendHook runs hook at the start of every Append and AppendBatch,
// before anything is appended: a hook that returns an error fails the call
// with it and appends nothing; a hook may also block (to hold appends until
// a test lets them through) or count.
func WithAppendHook(hook func(ctx context.Context, records []*api.Record) error) Option {
	return func(l *Log) { l.appendHook = hook }
}

// WithReadHook runs hook at the start of every Read: an error fails the
// read with it.
func WithReadHook(hook func(ctx context.Context, offset uint64) error) Option {
	return func(l *Log) { l.readHook = hook }
}

// FailWith fails every Append, AppendBatch and Read with err.
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

// NewLog returns an empty Log with opts applied.
func NewLog(opts ...Option) *Log {
	l := &Log{appended: make(chan struct{})}
	for _, opt := range opts {
		opt(l)
	}
	return l
}

// Append appends record and returns its offset.
func (l *Log) Append(ctx context.Context, record *api.Record) (uint64, error) {
	return l.AppendBatch(ctx, []*api.Record{record})
}

// AppendBatch appends records contiguously and returns the first's offset.
// It stores a copy of each record's value only, with its offset. A call
// whose context has ended appends nothing and returns the context's error.
func (l *Log) AppendBatch(ctx context.Context, records []*api.Record) (uint64, error) {
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
	first := uint64(len(l.records))
	for i, r := range records {
		stored := &api.Record{Value: append([]byte(nil), r.GetValue()...), Offset: first + uint64(i)}
		if l.bookkeeping {
			stored.Term, stored.Type = 2, uint32(i)+1
		}
		l.records = append(l.records, stored)
	}
	close(l.appended)
	l.appended = make(chan struct{})
	return first, nil
}

// Read returns the record at offset, or api.ErrOffsetOutOfRange. The caller
// must not modify it.
func (l *Log) Read(ctx context.Context, offset uint64) (*api.Record, error) {
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
	if offset >= uint64(len(l.records)) {
		return nil, api.ErrOffsetOutOfRange{Offset: offset}
	}
	return l.records[offset], nil
}

// Appended returns a channel closed at the next append.
func (l *Log) Appended() <-chan struct{} {
	l.appendedCalls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appended
}

// Len returns the number of records the log holds.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.records)
}

// Reads returns how many times Read was called.
func (l *Log) Reads() int64 { return l.reads.Load() }

// Appends returns how many times Append or AppendBatch was called.
func (l *Log) Appends() int64 { return l.appends.Load() }

// AppendedCalls returns how many times Appended was called.
func (l *Log) AppendedCalls() int64 { return l.appendedCalls.Load() }
