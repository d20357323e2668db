package server

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/servertest"
)

// newTestLog returns an empty in-memory log holding the default topic (the
// shared servertest fake): these tests are about the server, not storage.
func newTestLog(testing.TB) *servertest.Log { return servertest.NewLog() }

// appendDefault appends values to the default topic of log.
func appendDefault(t testing.TB, log CommitLog, values ...string) {
	t.Helper()
	for _, v := range values {
		if _, err := log.AppendBatch(context.Background(), api.DefaultTopic, []*api.Record{{Value: []byte(v)}}); err != nil {
			t.Fatalf("append %q: %v", v, err)
		}
	}
}

// appendGate holds every append until the test releases it, and reports the
// size of each append on entered.
type appendGate struct {
	entered chan int      // the number of records of an append that started
	release chan struct{} // one receive lets one append through
}

func newAppendGate() *appendGate {
	return &appendGate{entered: make(chan int), release: make(chan struct{})}
}

// hook is the servertest.WithAppendHook that holds appends.
func (g *appendGate) hook(ctx context.Context, records []*api.Record) error {
	select {
	case g.entered <- len(records):
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-g.release:
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
