package discovery

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// member is a Serf member named name advertising rpcAddr(name); an empty tags
// argument list means no tags at all.
func member(name string, tags ...string) serf.Member {
	m := serf.Member{Name: name, Tags: map[string]string{RPCAddrTag: rpcAddr(name)}}
	if len(tags) > 0 {
		m.Tags = map[string]string{}
		for i := 0; i+1 < len(tags); i += 2 {
			m.Tags[tags[i]] = tags[i+1]
		}
	}
	return m
}

func memberEvent(t serf.EventType, members ...serf.Member) serf.MemberEvent {
	return serf.MemberEvent{Type: t, Members: members}
}

func TestEventLoopHandle(t *testing.T) {
	const self = "n1"
	tests := []struct {
		name   string
		events []serf.Event
		want   []string
	}{
		{
			name:   "join of another member",
			events: []serf.Event{memberEvent(serf.EventMemberJoin, member("n2"))},
			want:   []string{"join n2 " + rpcAddr("n2")},
		},
		{
			name:   "own join ignored",
			events: []serf.Event{memberEvent(serf.EventMemberJoin, member(self))},
		},
		{
			name:   "coalesced event: every member but self",
			events: []serf.Event{memberEvent(serf.EventMemberJoin, member("n2"), member(self), member("n3"))},
			want:   []string{"join n2 " + rpcAddr("n2"), "join n3 " + rpcAddr("n3")},
		},
		{
			name:   "update passes the new address",
			events: []serf.Event{memberEvent(serf.EventMemberUpdate, member("n2", RPCAddrTag, "10.0.0.2:8400"))},
			want:   []string{"join n2 10.0.0.2:8400"},
		},
		{
			name:   "graceful leave",
			events: []serf.Event{memberEvent(serf.EventMemberLeave, member("n2"))},
			want:   []string{"leave n2"},
		},
		{
			name:   "failure counts as leave",
			events: []serf.Event{memberEvent(serf.EventMemberFailed, member("n2"))},
			want:   []string{"leave n2"},
		},
		{
			name:   "reap counts as leave",
			events: []serf.Event{memberEvent(serf.EventMemberReap, member("n2"))},
			want:   []string{"leave n2"},
		},
		{
			name: "own leave does not stop the loop",
			events: []serf.Event{
				memberEvent(serf.EventMemberLeave, member(self)),
				memberEvent(serf.EventMemberJoin, member("n2")),
				memberEvent(serf.EventMemberFailed, member("n3")),
			},
			want: []string{"join n2 " + rpcAddr("n2"), "leave n3"},
		},
		{
			name:   "member without an RPC address skipped",
			events: []serf.Event{memberEvent(serf.EventMemberJoin, member("n2", "role", "x"), member("n3"))},
			want:   []string{"join n3 " + rpcAddr("n3")},
		},
		{
			name: "user events and queries ignored",
			events: []serf.Event{
				serf.UserEvent{Name: "deploy"},
				&serf.Query{Name: "ping"},
				memberEvent(serf.EventMemberJoin, member("n2")),
			},
			want: []string{"join n2 " + rpcAddr("n2")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &recordingHandler{}
			l := &eventLoop{handler: h, nodeName: self, logger: zaptest.NewLogger(t)}
			for _, e := range tt.events {
				l.handle(e)
			}
			require.Equal(t, tt.want, h.Calls())
		})
	}
}

// blockingHandler blocks its first call until release is closed, then records
// calls like recordingHandler.
type blockingHandler struct {
	recordingHandler
	once    sync.Once
	release chan struct{}
}

func (h *blockingHandler) Join(name, addr string) error {
	h.once.Do(func() { <-h.release })
	return h.recordingHandler.Join(name, addr)
}

func TestEventLoopSlowHandlerNeverBlocksSerf(t *testing.T) {
	h := &blockingHandler{release: make(chan struct{})}
	l := startEventLoop(h, "self", zaptest.NewLogger(t))
	defer l.close()

	// Far more events than the channel buffers, sent the way Serf sends them:
	// a plain blocking send. With the handler stuck on the first event, only
	// the queue behind the pump lets them all through.
	const n = 8 * eventChanBuffer
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			l.events <- memberEvent(serf.EventMemberJoin, member(fmt.Sprintf("m%d", i)))
		}
	}()
	select {
	case <-sent:
	case <-time.After(waitFor):
		close(h.release) // let the sender finish, so the test can end
		<-sent
		t.Fatalf("sending %d events with the handler blocked did not finish in %v", n, waitFor)
	}

	close(h.release)
	want := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		want[i] = "join " + name + " " + rpcAddr(name)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, want, h.Calls(), "handler calls, in order")
	}, waitFor, tick)
}
