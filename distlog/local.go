package distlog

import (
	"errors"
	"fmt"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
)

// Log is a local, unreplicated log of client records (value and offset)
// on one storage.Log: the book's single log, for examples and tests that
// need a real log without a cluster. It is kept for the transition to
// topics (server's examples use it); a node uses DistributedLog. It is safe
// for concurrent use.
type Log struct {
	log *storage.Log
}

// Config configures a Log: see storage.Config.
type Config = storage.Config

// NewLog opens (or creates) the log in dir; see storage.NewLog.
func NewLog(dir string, c Config) (*Log, error) {
	l, err := storage.NewLog(dir, c)
	if err != nil {
		return nil, err
	}
	return &Log{log: l}, nil
}

// Append appends record's value and returns its offset.
func (l *Log) Append(record *api.Record) (uint64, error) {
	return l.AppendBatch([]*api.Record{record})
}

// AppendBatch appends the records' values at consecutive offsets and
// returns the first.
func (l *Log) AppendBatch(records []*api.Record) (uint64, error) {
	batch := make([]*storage.Record, len(records))
	for k, r := range records {
		if r == nil {
			return 0, fmt.Errorf("%w: record %d of %d", ErrNilRecord, k, len(records))
		}
		batch[k] = &storage.Record{Value: r.GetValue()}
	}
	first, err := l.log.AppendBatch(batch)
	return first, localError(err)
}

// Read returns the record at offset, or api.ErrOffsetOutOfRange.
func (l *Log) Read(offset uint64) (*api.Record, error) {
	rec, err := l.log.Read(offset)
	if err != nil {
		return nil, localError(err)
	}
	return &api.Record{Value: rec.Value, Offset: rec.Offset}, nil
}

// Appended returns a channel closed at the log's next change; see
// storage.Log.Appended.
func (l *Log) Appended() <-chan struct{} { return l.log.Appended() }

// Close closes the log.
func (l *Log) Close() error { return l.log.Close() }

// localError gives storage's client-facing errors their api meaning.
func localError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrClosed):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, storage.ErrRecordTooLarge):
		return fmt.Errorf("%w: %w", ErrRecordTooLarge, err)
	default:
		return err
	}
}
