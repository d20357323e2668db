package distlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
)

// Group commit. Every append (AppendBatch, AppendProduced, StartAppend)
// becomes one produce call in a queue; a proposer goroutine takes whatever
// queued up and proposes it as ONE producer-append Raft entry per topic,
// so many concurrent writers share one entry, one log-store write and one
// fsync per node, one replication message and one state-machine apply. The
// state machine decides every call of the entry on its own (an idempotent
// producer's duplicate or refused sequence concerns that call alone) and
// returns each call's offsets.
//
// Batching is natural: at most MaxInFlight entries are in Raft at once; an
// append that finds a free slot is proposed at once (no added latency when
// the log is idle), and appends that arrive while every slot is taken queue
// and go together when one frees, after the short linger below. Entries are proposed
// by one goroutine in queue order, so the calls of one goroutine are
// appended in the order it made them.
//
// Lingering: with one entry in flight, the writers of an entry get their
// answers when it is applied and write again while the next entry, holding
// only what queued up meanwhile, is in Raft; each write then waits about two
// entries, and a stream with a window of W records gets W records per two
// Raft round trips (entries alternate between n and W-n records). So once
// a slot frees, the proposer waits up to Linger for the queue to hold what
// it held then plus as many produce calls as the entry that just finished
// had (its writers coming back: a stream's requests, ProduceBatch or
// Produce calls, one each), then proposes everything in one entry: a
// stream's whole window goes in one entry per round trip. Calls, not
// records: a writer whose batches vary in size (a coalescing client) still
// meets the target with its next batch. A single writer loses nothing: its
// next write alone meets the target (one call), and an entry is waited for
// at most once (after a wait that gathered nothing, the next write is
// proposed at once).
//
// Why no new command kind: the producer-append entry (kind 6) already
// holds a list of calls, each with or without a producer, and every node
// of this and the previous release applies it; a call without a producer
// is a plain append.

// GroupCommitConfig configures how concurrent appends share Raft entries.
type GroupCommitConfig struct {
	// MaxInFlight is the number of coalesced entries the leader keeps in
	// Raft at once (proposed, not yet applied). Appends that arrive while
	// all are taken wait and go into the next entry together. Default
	// DefaultGroupCommitInFlight (1). More lets the leader's fsync of the
	// next entry overlap the followers' fsync of the last, but splits what
	// queued up into smaller entries, each with its own fsyncs; see
	// DefaultGroupCommitInFlight for what was measured.
	MaxInFlight int
	// MaxCalls bounds the produce calls in one entry (the entry's size is
	// bounded by MaxBatchBytes too). Default DefaultGroupCommitMaxCalls.
	MaxCalls int
	// Linger is the longest the proposer waits, once a slot is free, for
	// the writers of the entry that just finished to write again, so that
	// their records go in the next entry with those already queued (see
	// "Lingering" at the top of groupcommit.go). It stops waiting as soon
	// as they are back or an entry would be full. Default
	// DefaultGroupCommitLinger (500µs); negative: never wait.
	Linger time.Duration
	// Disabled makes every append its own Raft entry, as releases before
	// group commit did (Raft still stores queued entries with one write).
	// For comparison.
	Disabled bool
}

// Defaults of GroupCommitConfig.
const (
	// DefaultGroupCommitInFlight is the default GroupCommitConfig.MaxInFlight:
	// one entry in Raft at a time. On a 3-node cluster on one host (one
	// disk), BenchmarkGroupCommit with 64 writers did 19-24k records/s with
	// 1 and 15-20k with 2 (31 vs 44 entries per 1000 records). With 2, one
	// ProduceStream of 64 records in flight (proglog bench --mode stream)
	// spread its records over twice the entries and fsyncs and was 20-25%
	// slower than before group commit (interleaved bench-cluster runs,
	// medians of 3: 12.9-18.5k vs 16.7-23.9k records/s); with 1 it is
	// about even. Measured again with Raft's own timings (go-metrics) on
	// that cluster: with 2, 4, 8 or 16 in flight (with and without
	// BatchApplyCh) one stream was no faster, because the leader's
	// fdatasync of the next entry overlaps the followers' of the last on
	// the one disk and each takes longer (followers' StoreLogs 0.35 ms
	// with 1 in flight, 0.71-0.83 ms with 2), or, with more, Raft's
	// pipeline queues small entries that each need their own fdatasync on
	// the followers. Lingering (GroupCommit.Linger) gets one stream's
	// whole window into each entry instead. Nodes on separate disks may
	// gain from 2; not measured.
	DefaultGroupCommitInFlight = 1
	// DefaultGroupCommitMaxCalls is the default GroupCommitConfig.MaxCalls.
	DefaultGroupCommitMaxCalls = 4096
	// DefaultGroupCommitLinger is the default GroupCommitConfig.Linger:
	// about the time a writer on this host takes to get its answer and
	// send its next write (a ProduceStream answering a full entry, or a
	// unary call), so that a stream's records are back before it expires.
	DefaultGroupCommitLinger = 500 * time.Microsecond
)

func (c GroupCommitConfig) withDefaults() (GroupCommitConfig, error) {
	if c.MaxInFlight < 0 || c.MaxCalls < 0 {
		return c, fmt.Errorf("%w: GroupCommit.MaxInFlight = %d, GroupCommit.MaxCalls = %d, want >= 0 (0: defaults %d, %d)",
			ErrInvalidConfig, c.MaxInFlight, c.MaxCalls, DefaultGroupCommitInFlight, DefaultGroupCommitMaxCalls)
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultGroupCommitInFlight
	}
	if c.MaxCalls == 0 {
		c.MaxCalls = DefaultGroupCommitMaxCalls
	}
	if c.Linger == 0 {
		c.Linger = DefaultGroupCommitLinger
	}
	return c, nil
}

// AppendFuture is an append started by StartAppend.
type AppendFuture struct {
	done    chan struct{}
	results []api.ProducerResult
	err     error
}

// Done is closed once the append's outcome is known.
func (f *AppendFuture) Done() <-chan struct{} { return f.done }

// Result returns the outcome of each call, as AppendProduced; it waits
// for Done.
func (f *AppendFuture) Result() ([]api.ProducerResult, error) {
	<-f.done
	return f.results, f.err
}

func (f *AppendFuture) finish(results []api.ProducerResult, err error) {
	f.results, f.err = results, err
	close(f.done)
}

// appendCall is one append waiting in the group-commit queue.
type appendCall struct {
	// ctx is the caller's: a call whose context ended before it was
	// proposed is dropped, never appended.
	ctx    context.Context
	topic  string
	runs   []producerRun
	values [][]byte
	// bytes is what the call adds to an entry's encoding: its runs and its
	// values with their lengths.
	bytes  uint64
	future *AppendFuture
}

// callBytes is what runs and values of these lengths add to a
// producer-append entry.
func callBytes(runs int, lengths []int) uint64 {
	size := uint64(runs * producerRunMaxBytes)
	for _, n := range lengths {
		size += uint64(uvarintLen(uint64(n)) + n)
	}
	return size
}

// groupCommitter queues appends and proposes them to Raft in coalesced
// entries (see the comment at the top of this file). The proposer and the
// waiter are its goroutines; DistributedLog owns them.
type groupCommitter struct {
	d *DistributedLog

	// mu guards queue, its totals and closed.
	mu    sync.Mutex
	queue []*appendCall
	// queuedRuns and queuedBytes are the produce calls (producer runs:
	// one per ProducerBatch) and the entry bytes (appendCall.bytes) of the
	// calls in queue.
	queuedRuns  int
	queuedBytes uint64
	closed      bool

	// lastRuns is how many produce calls the last entry batch proposed had
	// whose writers the proposer has not waited for yet (see linger).
	// Only the proposer goroutine uses it.
	lastRuns int

	// wake tells the proposer that the queue grew (buffer of one,
	// non-blocking send).
	wake chan struct{}
	// slots holds a token per entry batch in Raft (capacity MaxInFlight):
	// the proposer puts one before it proposes, the waiter takes it back
	// once the batch is applied.
	slots chan struct{}
	// inflight carries proposed batches, in order, to the waiter.
	inflight chan []proposedEntry
}

// proposedEntry is one Raft entry of coalesced calls.
type proposedEntry struct {
	calls  []*appendCall
	future raft.ApplyFuture
}

func newGroupCommitter(d *DistributedLog) *groupCommitter {
	n := d.config.GroupCommit.MaxInFlight
	return &groupCommitter{d: d, wake: make(chan struct{}, 1), slots: make(chan struct{}, n),
		inflight: make(chan []proposedEntry, n)}
}

// enqueue adds call to the queue; ErrClosed once the log is closing.
func (g *groupCommitter) enqueue(call *appendCall) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.queue = append(g.queue, call)
	g.queuedRuns += len(call.runs)
	g.queuedBytes += call.bytes
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
	return nil
}

// cancel removes call from the queue; false when it was proposed already
// (or finished).
func (g *groupCommitter) cancel(call *appendCall) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := slices.Index(g.queue, call)
	if k < 0 {
		return false
	}
	g.queue = slices.Delete(g.queue, k, k+1)
	g.dequeuedLocked(call)
	return true
}

// dequeuedLocked takes call, just removed from the queue, off its totals.
// Caller holds mu.
func (g *groupCommitter) dequeuedLocked(call *appendCall) {
	g.queuedRuns -= len(call.runs)
	g.queuedBytes -= call.bytes
}

// propose is the proposer goroutine: it proposes what queued up whenever an
// in-flight slot is free, until closed, then fails what is still queued
// with ErrClosed and closes inflight (which ends the waiter once Raft has
// settled the entries in flight).
func (g *groupCommitter) propose(closed <-chan struct{}) {
	defer close(g.inflight)
	defer g.failQueued()
	for {
		select {
		case <-g.wake:
		case <-closed:
			return
		}
		for {
			select {
			case g.slots <- struct{}{}:
			case <-closed:
				return
			}
			if !g.linger(closed) {
				return
			}
			calls := g.take()
			if len(calls) == 0 {
				<-g.slots
				break
			}
			for _, c := range calls {
				g.lastRuns += len(c.runs)
			}
			g.inflight <- g.proposeCalls(calls)
		}
	}
}

// failQueued refuses further appends and fails the queued ones.
func (g *groupCommitter) failQueued() {
	g.mu.Lock()
	queued := g.queue
	g.queue, g.closed = nil, true
	g.queuedRuns, g.queuedBytes = 0, 0
	g.mu.Unlock()
	for _, c := range queued {
		c.future.finish(nil, ErrClosed)
	}
}

// linger waits, before the proposer takes the next batch, until the queue
// holds the produce calls it holds now plus lastRuns (the writers of the
// last entry writing again), or a full entry, or until Linger passes; then
// it forgets lastRuns, so each entry is waited for at most once. It
// returns false when closed is closed first.
func (g *groupCommitter) linger(closed <-chan struct{}) bool {
	want, ok := g.lingerTarget()
	if !ok {
		return true
	}
	return g.waitGathered(want, closed)
}

// lingerTarget returns how many produce calls linger waits for, and false
// when it should not wait; it forgets lastRuns.
func (g *groupCommitter) lingerTarget() (int, bool) {
	last := g.lastRuns
	g.lastRuns = 0
	if last == 0 || g.d.config.GroupCommit.Linger <= 0 {
		return 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queuedRuns + last, true
}

// waitGathered waits until the queue holds want produce calls (or a full
// entry), at most Linger; false when closed is closed first.
func (g *groupCommitter) waitGathered(want int, closed <-chan struct{}) bool {
	var timer *time.Timer
	for !g.gathered(want) {
		if timer == nil {
			timer = time.NewTimer(g.d.config.GroupCommit.Linger)
			defer timer.Stop()
		}
		select {
		case <-g.wake:
		case <-timer.C:
			return true
		case <-closed:
			return false
		}
	}
	return true
}

// gathered reports whether the queue holds want produce calls, or more
// than one entry takes.
func (g *groupCommitter) gathered(want int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queuedRuns >= want || g.queuedBytes >= g.d.config.MaxBatchBytes ||
		len(g.queue) >= g.d.config.GroupCommit.MaxCalls
}

// take removes from the front of the queue the calls of the next batch:
// in queue order, at most MaxCalls, and stopping at the first call that
// would make its topic's entry exceed MaxBatchBytes (stopping rather than
// skipping keeps every caller's calls in order). Calls whose context has
// ended are failed with its error and not taken.
func (g *groupCommitter) take() []*appendCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	var taken []*appendCall
	sizes := map[string]uint64{}
	n := 0
	for ; n < len(g.queue) && len(taken) < g.d.config.GroupCommit.MaxCalls; n++ {
		c := g.queue[n]
		if err := c.ctx.Err(); err != nil {
			g.dequeuedLocked(c)
			c.future.finish(nil, err)
			continue
		}
		size, ok := sizes[c.topic]
		if !ok {
			size = producerAppendHeaderBytes(c.topic)
		}
		if len(taken) > 0 && size+c.bytes > g.d.config.MaxBatchBytes {
			break
		}
		sizes[c.topic] = size + c.bytes
		g.dequeuedLocked(c)
		taken = append(taken, c)
	}
	rest := copy(g.queue, g.queue[n:])
	clear(g.queue[rest:])
	g.queue = g.queue[:rest]
	return taken
}

// proposeCalls proposes calls as one entry per topic (in the order each
// topic first appears) and returns the entries.
func (g *groupCommitter) proposeCalls(calls []*appendCall) []proposedEntry {
	var entries []proposedEntry
	byTopic := map[string]int{}
	for _, c := range calls {
		k, ok := byTopic[c.topic]
		if !ok {
			k = len(entries)
			byTopic[c.topic] = k
			entries = append(entries, proposedEntry{})
		}
		entries[k].calls = append(entries[k].calls, c)
	}
	// One timestamp for the whole batch, stamped by this leader.
	ts := time.Now().UnixNano()
	limits := g.d.config.Producers.limits()
	for k := range entries {
		e := &entries[k]
		var runs []producerRun
		var values [][]byte
		for _, c := range e.calls {
			runs = append(runs, c.runs...)
			values = append(values, c.values...)
		}
		data := encodeProducerAppend(e.calls[0].topic, ts, limits, runs, values)
		e.future = g.d.raft.Apply(data, g.d.config.ApplyTimeout)
	}
	return entries
}

// wait is the waiter goroutine: it settles the proposed batches in order
// and frees their slots, until inflight is closed.
func (g *groupCommitter) wait() {
	for entries := range g.inflight {
		for _, e := range entries {
			g.settle(e)
		}
		<-g.slots
	}
}

// settle waits for entry e and gives each of its calls its outcome.
func (g *groupCommitter) settle(e proposedEntry) {
	result, err := g.d.applyOutcome(e.future)
	if err == nil && result.err != nil {
		err = result.err
	}
	if err == nil {
		total := 0
		for _, c := range e.calls {
			total += len(c.runs)
		}
		if len(result.runs) != total {
			err = fmt.Errorf("distlog: %d outcomes for %d calls", len(result.runs), total)
		}
	}
	next := 0
	for _, c := range e.calls {
		if err != nil {
			c.future.finish(nil, err)
			continue
		}
		c.future.finish(result.runs[next:next+len(c.runs):next+len(c.runs)], nil)
		next += len(c.runs)
	}
}

// applyOutcome waits for future and returns its applyResult; Raft's errors
// and a stopped state machine are mapped to the errors a caller retries
// on.
func (d *DistributedLog) applyOutcome(future raft.ApplyFuture) (applyResult, error) {
	if err := future.Error(); err != nil {
		return applyResult{}, d.raftError(err)
	}
	result, ok := future.Response().(applyResult)
	if !ok {
		return applyResult{}, fmt.Errorf("distlog: unexpected apply response %T", future.Response())
	}
	if errors.Is(result.err, ErrFSMFailed) {
		// Raft committed the entry (the other nodes apply it), but this
		// node's state machine cannot say at which offsets: to the client
		// a leader that lost its leadership in flight. It hands leadership
		// over (stepDownLoop), so the retry goes to a healthy leader, and
		// the idempotent producer returns the offsets the entry got.
		return applyResult{}, api.ErrNotLeader{OutcomeUnknown: true}
	}
	if result.skipped {
		// Entries are skipped only when an earlier run applied them; one
		// submitted by this process cannot be.
		return applyResult{}, fmt.Errorf("distlog: raft index %d was skipped as already applied", future.Index())
	}
	return result, nil
}

// commit appends call: through the group-commit queue, or as its own entry
// when group commit is disabled; it waits for the outcome. A call whose
// context ends while it is queued is withdrawn (nothing appended, the
// context's error returned); once proposed, it waits for Raft, as apply
// does.
func (d *DistributedLog) commit(ctx context.Context, call *appendCall) ([]api.ProducerResult, error) {
	if d.config.GroupCommit.Disabled {
		data := encodeProducerAppend(call.topic, time.Now().UnixNano(), d.config.Producers.limits(), call.runs, call.values)
		result, _, err := d.apply(ctx, data)
		if err != nil {
			return nil, err
		}
		if len(result.runs) != len(call.runs) {
			return nil, fmt.Errorf("distlog: %d outcomes for %d calls", len(result.runs), len(call.runs))
		}
		return result.runs, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := d.commits.enqueue(call); err != nil {
		return nil, err
	}
	select {
	case <-call.future.done:
	case <-ctx.Done():
		if d.commits.cancel(call) {
			return nil, ctx.Err()
		}
	}
	return call.future.Result()
}

// StartAppend queues the produce calls batches to topic ("" is
// DefaultTopic) for the next group-commit entry and returns without waiting
// for them; their outcome, when the future is done, is what AppendProduced
// would have returned. The calls of appends started one after the other
// (by one goroutine) are appended in that order, so a stream can keep many
// appends in flight and still answer in order. The calls of one StartAppend
// are appended in one entry, each contiguous. A call whose context ends
// before it is proposed is not appended (the context's error is its
// outcome). Errors that refuse the append before it is queued are returned
// at once, as by AppendProduced.
func (d *DistributedLog) StartAppend(ctx context.Context, topic string, batches []api.ProducerBatch) (*AppendFuture, error) {
	call, err := d.producedCall(ctx, topic, batches)
	if err != nil {
		return nil, err
	}
	if d.config.GroupCommit.Disabled {
		// No queue keeps the order: append before returning.
		results, err := d.commit(ctx, call)
		call.future.finish(results, err)
		return call.future, nil
	}
	if err := d.commits.enqueue(call); err != nil {
		return nil, err
	}
	return call.future, nil
}
