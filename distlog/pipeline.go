package distlog

import (
	"sync"

	"github.com/hashicorp/raft"
)

// relayTransport is Raft's NetworkTransport with a fix for a deadlock in
// hashicorp/raft v1.8's pipelined replication: when a follower's answer
// stops the leader's pipeline decoder (a newer term, or a refused append
// as after a leader change), nobody reads the pipeline's completed
// requests any more; its response decoder then blocks handing one over,
// the sender blocks queueing the next request, and the replication
// goroutine never returns — replication to that follower stops for good,
// and Raft's Shutdown waits for it forever (seen in this package's and
// agent's tests after a leadership transfer; grafana/pyroscope#5518
// describes the live stall). The relay below always reads the completed
// requests, queueing them for Raft, so neither side ever blocks and the
// replication goroutine reaches its own stop.
type relayTransport struct {
	*raft.NetworkTransport
}

// AppendEntriesPipeline implements raft.Transport.
func (t relayTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	r := &relayPipeline{AppendPipeline: p, out: make(chan raft.AppendFuture), closed: make(chan struct{}), done: make(chan struct{})}
	go r.relay(p.Consumer())
	return r, nil
}

// relayPipeline relays an AppendPipeline's completed requests through an
// unbounded queue. The queue holds at most the requests sent between the
// decoder's exit and the pipeline's Close.
type relayPipeline struct {
	raft.AppendPipeline
	out       chan raft.AppendFuture
	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	done      chan struct{} // closed when relay returns
}

// relay moves completed requests from in to out until Close.
func (r *relayPipeline) relay(in <-chan raft.AppendFuture) {
	defer close(r.done)
	var queue []raft.AppendFuture
	for {
		var out chan raft.AppendFuture
		var next raft.AppendFuture
		if len(queue) > 0 {
			out, next = r.out, queue[0]
		}
		select {
		case f := <-in:
			queue = append(queue, f)
		case out <- next:
			queue[0] = nil
			queue = queue[1:]
		case <-r.closed:
			return
		}
	}
}

// Consumer implements raft.AppendPipeline.
func (r *relayPipeline) Consumer() <-chan raft.AppendFuture { return r.out }

// Close implements raft.AppendPipeline: it closes the pipeline and stops
// the relay. It is idempotent.
func (r *relayPipeline) Close() error {
	err := r.AppendPipeline.Close()
	r.closeOnce.Do(func() { close(r.closed) })
	<-r.done
	return err
}
