package distlog

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// fakePipeline is an AppendPipeline whose completed requests are sent by
// the test, on an unbuffered channel as NetworkTransport's are.
type fakePipeline struct {
	done   chan raft.AppendFuture
	closed bool
}

func (p *fakePipeline) AppendEntries(*raft.AppendEntriesRequest, *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	return nil, nil
}
func (p *fakePipeline) Consumer() <-chan raft.AppendFuture { return p.done }
func (p *fakePipeline) Close() error                       { p.closed = true; return nil }

// The pipeline's completions are always taken, even when Raft's decoder
// stopped reading (the hashicorp/raft deadlock relayTransport avoids), and
// they reach a reader in order.
func TestRelayPipelineNeverBlocksTheDecoder(t *testing.T) {
	inner := &fakePipeline{done: make(chan raft.AppendFuture)}
	r := &relayPipeline{AppendPipeline: inner, out: make(chan raft.AppendFuture), closed: make(chan struct{}), done: make(chan struct{})}
	go r.relay(inner.Consumer())

	futures := make([]raft.AppendFuture, 5)
	for k := range futures {
		futures[k] = &fakeFuture{k: k}
		select {
		case inner.done <- futures[k]: // nobody reads r.Consumer()
		case <-time.After(waitTimeout):
			t.Fatalf("completion %d was not taken", k)
		}
	}
	for k := range 2 {
		require.Equal(t, futures[k], <-r.Consumer())
	}
	require.NoError(t, r.Close())
	require.True(t, inner.closed)
	require.NoError(t, r.Close(), "Close is idempotent")
}

type fakeFuture struct {
	raft.AppendFuture
	k int
}
