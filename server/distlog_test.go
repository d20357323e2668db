package server

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog"
)

// localLog adapts the local distlog.Log to CommitLog, as the agent does for
// a single node: the local log's calls are quick and take no context, so the
// adapter only refuses calls whose context has already ended.
type localLog struct {
	log *distlog.Log
}

var _ CommitLog = localLog{}

func (l localLog) Append(ctx context.Context, record *api.Record) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return l.log.Append(record)
}

func (l localLog) AppendBatch(ctx context.Context, records []*api.Record) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return l.log.AppendBatch(records)
}

func (l localLog) Read(ctx context.Context, offset uint64) (*api.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l.log.Read(offset)
}

func (l localLog) Appended() <-chan struct{} { return l.log.Appended() }

// newTestLog returns an empty distlog.Log in a temporary directory, closed at
// the end of the test (after the servers on it, which are stopped by cleanups
// registered later).
func newTestLog(t testing.TB) CommitLog {
	t.Helper()
	log, err := distlog.NewLog(t.TempDir(), distlog.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, log.Close()) })
	return localLog{log: log}
}
