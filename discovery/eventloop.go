package discovery

import (
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
	"go.uber.org/zap"
)

const (
	// eventChanBuffer is the buffer of the channel Serf sends its events to.
	// The pump drains it at once, so it only absorbs scheduling hiccups; it
	// must also hold the few events Serf may still forward while it shuts down,
	// after the pump has stopped. With a snapshot (Config.SnapshotPath),
	// Serf's snapshotter forwards events without blocking and drops any that
	// find this channel full, so it is as large as the snapshotter's own
	// buffer (2048 events).
	eventChanBuffer = 2048

	// queueWarnDepth: every time the queue of events waiting for the handler
	// grows by this many, a warning says the handler is not keeping up.
	queueWarnDepth = 1024

	// slowHandlerThreshold: a handler call that takes longer is logged.
	slowHandlerThreshold = time.Second
)

// eventLoop takes Serf's events and calls the Handler with them.
//
// Two goroutines, so that Serf is never blocked by the handler: Serf sends
// member events while holding its member lock, so a send that blocks stalls
// all of Serf, gossip included. The pump moves each event from Serf's channel
// to an unbounded queue at once; the dispatcher calls the handler, one event
// at a time and in order, from that queue. A slow handler makes the queue
// grow (and is logged) but never stops the gossip.
type eventLoop struct {
	handler  Handler
	nodeName string
	logger   *zap.Logger

	// events is the channel Serf sends to (Config.EventCh).
	events chan serf.Event
	queue  eventQueue
	// stop is closed by close to end both goroutines.
	stop chan struct{}
	// done waits for both goroutines.
	done sync.WaitGroup
}

// startEventLoop starts the pump and the dispatcher. The caller must call
// close once, after Serf has shut down (so that no more events come).
func startEventLoop(handler Handler, nodeName string, logger *zap.Logger) *eventLoop {
	l := &eventLoop{
		handler:  handler,
		nodeName: nodeName,
		logger:   logger,
		events:   make(chan serf.Event, eventChanBuffer),
		queue:    eventQueue{wake: make(chan struct{}, 1)},
		stop:     make(chan struct{}),
	}
	l.done.Add(2)
	go l.pump(l.events, l.stop)
	go l.dispatch(l.queue.wake, l.stop)
	return l
}

// close stops both goroutines and waits for them. Events still queued are
// dropped: the node is going away. A handler call in progress is waited for.
func (l *eventLoop) close() {
	close(l.stop)
	l.done.Wait()
	if dropped := len(l.queue.takeAll()); dropped > 0 {
		l.logger.Debug("dropped membership events at close", zap.Int("events", dropped))
	}
}

// pump moves events from Serf's channel to the queue without ever waiting on
// the handler.
func (l *eventLoop) pump(events <-chan serf.Event, stop <-chan struct{}) {
	defer l.done.Done()
	for {
		select {
		case e := <-events:
			if depth := l.queue.push(e); depth%queueWarnDepth == 0 {
				l.logger.Warn("membership handler is not keeping up", zap.Int("queued_events", depth))
			}
		case <-stop:
			return
		}
	}
}

// dispatch calls the handler for each queued event, in order. It owns every
// call to the handler.
func (l *eventLoop) dispatch(wake <-chan struct{}, stop <-chan struct{}) {
	defer l.done.Done()
	for {
		select {
		case <-wake:
			for _, e := range l.queue.takeAll() {
				select {
				case <-stop:
					return
				default:
				}
				l.handle(e)
			}
		case <-stop:
			return
		}
	}
}

// handle turns one Serf event into handler calls, one per member it names.
// The local member's own events are skipped (the node knows about itself, and
// its own leave is no reason to stop handling the others), and so are events
// other than member events.
func (l *eventLoop) handle(e serf.Event) {
	me, ok := e.(serf.MemberEvent)
	if !ok {
		l.logger.Debug("ignoring serf event", zap.Stringer("event", e.EventType()))
		return
	}
	for _, member := range me.Members {
		if member.Name == l.nodeName {
			continue
		}
		switch me.Type {
		case serf.EventMemberJoin, serf.EventMemberUpdate:
			// An update means changed tags: pass the possibly new address on,
			// Join being idempotent for a known member.
			addr := member.Tags[RPCAddrTag]
			if addr == "" {
				l.logger.Warn("member has no RPC address tag; not passing it on",
					zap.String("member", member.Name), zap.String("tag", RPCAddrTag),
					zap.Stringer("event", me.Type))
				continue
			}
			l.call("join", member.Name, me.Type, func() error { return l.handler.Join(member.Name, addr) })
		case serf.EventMemberLeave, serf.EventMemberFailed, serf.EventMemberReap:
			// A failed member may come back; it then joins again. Reap follows
			// a leave or a failure, so Leave can come twice for one member.
			l.call("leave", member.Name, me.Type, func() error { return l.handler.Leave(member.Name) })
		default:
			l.logger.Debug("ignoring member event",
				zap.String("member", member.Name), zap.Stringer("event", me.Type))
		}
	}
}

// call runs one handler call, logging its failure or slowness: neither stops
// the loop.
func (l *eventLoop) call(op, member string, event serf.EventType, fn func() error) {
	start := time.Now()
	err := fn()
	elapsed := time.Since(start)
	fields := []zap.Field{
		zap.String("op", op), zap.String("member", member),
		zap.Stringer("event", event), zap.Duration("took", elapsed),
	}
	switch {
	case err != nil:
		l.logger.Warn("membership handler failed", append(fields, zap.Error(err))...)
	case elapsed > slowHandlerThreshold:
		l.logger.Warn("membership handler was slow", fields...)
	default:
		l.logger.Debug("membership handler called", fields...)
	}
}

// eventQueue is an unbounded FIFO of events between the pump and the
// dispatcher.
type eventQueue struct {
	// mu guards items.
	mu    sync.Mutex
	items []serf.Event
	// wake has a buffer of one: push leaves a token without blocking, and
	// the dispatcher, woken once, takes everything queued.
	wake chan struct{}
}

// push appends e and wakes the dispatcher. It returns the queue's length.
func (q *eventQueue) push(e serf.Event) int {
	q.mu.Lock()
	q.items = append(q.items, e)
	depth := len(q.items)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return depth
}

// takeAll empties the queue and returns what it held, oldest first.
func (q *eventQueue) takeAll() []serf.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}
