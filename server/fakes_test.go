package server

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// countingLog counts the calls a server makes to the CommitLog it wraps.
type countingLog struct {
	CommitLog
	reads         atomic.Int64
	appendedCalls atomic.Int64
}

func (l *countingLog) Read(ctx context.Context, offset uint64) (*api.Record, error) {
	l.reads.Add(1)
	return l.CommitLog.Read(ctx, offset)
}

func (l *countingLog) Appended() <-chan struct{} {
	l.appendedCalls.Add(1)
	return l.CommitLog.Appended()
}

// gatedLog holds every append until the test releases it, and reports the
// size of each append on entered.
type gatedLog struct {
	CommitLog
	entered chan int      // the number of records of an append that started
	release chan struct{} // one receive lets one append through
}

func (l *gatedLog) Append(ctx context.Context, record *api.Record) (uint64, error) {
	if err := l.wait(ctx, 1); err != nil {
		return 0, err
	}
	return l.CommitLog.Append(ctx, record)
}

func (l *gatedLog) AppendBatch(ctx context.Context, records []*api.Record) (uint64, error) {
	if err := l.wait(ctx, len(records)); err != nil {
		return 0, err
	}
	return l.CommitLog.AppendBatch(ctx, records)
}

func (l *gatedLog) wait(ctx context.Context, n int) error {
	select {
	case l.entered <- n:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-l.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// authCall is one Authorize call.
type authCall struct{ subject, object, action string }

// recordingAuthorizer records every call and allows it unless deny is set.
type recordingAuthorizer struct {
	deny codes.Code // codes.OK allows

	mu    sync.Mutex
	calls []authCall // guarded by mu
}

func (a *recordingAuthorizer) Authorize(subject, object, action string) error {
	a.mu.Lock()
	a.calls = append(a.calls, authCall{subject, object, action})
	a.mu.Unlock()
	if a.deny != codes.OK {
		return status.Errorf(a.deny, "%s may not %s", subject, action)
	}
	return nil
}

func (a *recordingAuthorizer) Calls() []authCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]authCall(nil), a.calls...)
}

// allowAll is the Authorizer of tests that are not about access control.
type allowAll struct{}

func (allowAll) Authorize(string, string, string) error { return nil }
