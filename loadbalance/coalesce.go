package loadbalance

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// Coalescing: concurrent Produce calls to the same topic share one
// ProduceBatch RPC, as Kafka's producer and NATS's async publish batch what
// queued up while a request was out. There is no linger timer: a call that
// finds fewer than Config.CoalesceInFlight RPCs of its topic in flight goes
// at once, alone, on its own goroutine (a lone writer pays nothing); calls
// that arrive while the limit is reached queue, and leave together as the
// next batch when an RPC of the topic ends. A unary mTLS call costs the
// client and the leader together about 190 µs of CPU, so one record per
// call caps a small cluster at a few thousand writes a second per core
// however many writers wait; one RPC per batch does not.
//
// A batch is a ProduceBatch (a Produce when it holds one call) with one
// producer session and one sequence, resent as it is on every retry, so it
// is appended exactly once and the callers' records stay in arrival order,
// contiguous. Each caller gets the batch's first offset plus its position.

// Defaults of the coalescing fields of Config. The record and byte limits
// are the server's defaults for one ProduceBatch (server.Config's
// MaxBatchRecords and MaxBatchBytes), so a coalesced batch is never refused
// for its size by a server left at its defaults.
const (
	// DefaultMaxCoalesceRecords is the default Config.MaxCoalesceRecords.
	DefaultMaxCoalesceRecords = 1000
	// DefaultMaxCoalesceBytes is the default Config.MaxCoalesceBytes:
	// 4 MiB of record values.
	DefaultMaxCoalesceBytes = 4 << 20
	// DefaultCoalesceInFlight is the default Config.CoalesceInFlight.
	DefaultCoalesceInFlight = 1
)

// produceCall is one Produce call of a coalescing client: queued, then sent
// in a batch. Its fields other than value and deadline are guarded by
// coalescer.mu until done is closed; after that they are the caller's.
type produceCall struct {
	value []byte
	// deadline is when the caller stops waiting: its context's deadline,
	// or RetryTimeout after the call when it has none. A batch's RPC lasts
	// until its latest caller's deadline.
	deadline time.Time
	// batch is the batch the call was sent in; nil while it is queued.
	batch *produceBatch
	// left is set when the caller stopped waiting after the call was sent
	// (its context ended): the outcome is no longer anyone's.
	left bool
	// done is closed once offset and err are set.
	done   chan struct{}
	offset uint64
	err    error
}

// produceBatch is the calls sent together in one RPC.
type produceBatch struct {
	topic string
	calls []*produceCall
	// waiting is how many of calls still have a caller waiting; when the
	// last leaves, cancel ends the RPC. Guarded by coalescer.mu.
	waiting int
	cancel  context.CancelFunc
}

// topicQueue is the coalescing state of one topic.
type topicQueue struct {
	// queued are the calls waiting for the next batch, in arrival order.
	// Non-empty only while inFlight is at Config.CoalesceInFlight.
	queued []*produceCall
	// inFlight counts this topic's RPCs in flight: lone calls sent by
	// their callers and batches sent by sendBatch.
	inFlight int
}

// coalescer holds a Client's coalescing state.
type coalescer struct {
	mu sync.Mutex
	// topics are the topics with an RPC in flight or calls queued.
	// Guarded by mu.
	topics map[string]*topicQueue
	// batches are the batches being sent, so that Close can end them.
	// Guarded by mu.
	batches map[*produceBatch]struct{}
	// closed is set by Close: no batch starts after it. Guarded by mu.
	closed bool
	// senders counts the sendBatch goroutines; Close waits for them.
	senders sync.WaitGroup
}

// produceCoalesced is Produce with coalescing: see the comment at the top
// of this file.
func (c *Client) produceCoalesced(ctx context.Context, topic string, value []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, notSent(err)
	}
	co := &c.coalescer
	co.mu.Lock()
	q := co.topics[topic]
	if q == nil {
		q = &topicQueue{}
		co.topics[topic] = q
	}
	if q.inFlight < c.cfg.CoalesceInFlight {
		// Nothing is queued (queued is empty below the limit): go at once,
		// on the caller's goroutine and context, as without coalescing.
		q.inFlight++
		co.mu.Unlock()
		offset, err := c.produceOne(ctx, topic, value)
		c.rpcDone(topic)
		return offset, err
	}
	call := &produceCall{value: value, done: make(chan struct{})}
	if deadline, ok := ctx.Deadline(); ok {
		call.deadline = deadline
	} else {
		call.deadline = time.Now().Add(c.cfg.RetryTimeout)
	}
	q.queued = append(q.queued, call)
	co.mu.Unlock()

	select {
	case <-call.done:
		return call.offset, call.err
	case <-ctx.Done():
	}
	co.mu.Lock()
	defer co.mu.Unlock()
	select {
	case <-call.done: // finished while the caller was giving up
		return call.offset, call.err
	default:
	}
	if call.batch == nil {
		// Still queued: withdrawn, never sent.
		q.queued = slices.DeleteFunc(q.queued, func(queued *produceCall) bool { return queued == call })
		return 0, notSent(ctx.Err())
	}
	call.left = true
	if call.batch.waiting--; call.batch.waiting == 0 {
		call.batch.cancel()
	}
	return 0, fmt.Errorf("loadbalance: produce: %w (%w); it was sent in a batch and may still be appended",
		status.FromContextError(ctx.Err()).Err(), ctx.Err())
}

// notSent is the error of a call whose context ended before it was sent:
// its code is the context's (Canceled, DeadlineExceeded), and errors.Is
// finds the context's error.
func notSent(ctxErr error) error {
	return fmt.Errorf("loadbalance: produce: %w (%w); not sent", status.FromContextError(ctxErr).Err(), ctxErr)
}

// rpcDone ends one RPC of topic and sends what queued meanwhile.
func (c *Client) rpcDone(topic string) {
	co := &c.coalescer
	co.mu.Lock()
	defer co.mu.Unlock()
	q := co.topics[topic]
	q.inFlight--
	for len(q.queued) > 0 && q.inFlight < c.cfg.CoalesceInFlight {
		if co.closed {
			for _, call := range q.queued {
				call.err = fmt.Errorf("loadbalance: produce: %w", ErrClosed)
				close(call.done)
			}
			q.queued = nil
			break
		}
		c.startBatchLocked(topic, q)
	}
	if q.inFlight == 0 && len(q.queued) == 0 {
		delete(co.topics, topic)
	}
}

// startBatchLocked takes the next batch off q, as many calls as the limits
// allow (always at least one), and sends it on a new goroutine.
func (c *Client) startBatchLocked(topic string, q *topicQueue) {
	co := &c.coalescer
	n, size := 0, 0
	for n < len(q.queued) && n < c.cfg.MaxCoalesceRecords {
		size += len(q.queued[n].value)
		if n > 0 && size > c.cfg.MaxCoalesceBytes {
			break
		}
		n++
	}
	b := &produceBatch{topic: topic, calls: slices.Clone(q.queued[:n]), waiting: n}
	q.queued = slices.Delete(q.queued, 0, n)
	deadline := b.calls[0].deadline
	for _, call := range b.calls {
		call.batch = b
		if call.deadline.After(deadline) {
			deadline = call.deadline
		}
	}
	// The RPC belongs to the batch, not to one caller: it lasts until the
	// last caller's deadline, or until every caller has left or the
	// client closes.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	b.cancel = cancel
	co.batches[b] = struct{}{}
	q.inFlight++
	co.senders.Add(1)
	go c.sendBatch(ctx, b)
}

// sendBatch sends b, hands each caller its outcome, and sends what queued
// meanwhile.
func (c *Client) sendBatch(ctx context.Context, b *produceBatch) {
	defer c.coalescer.senders.Done()
	defer c.rpcDone(b.topic)
	defer func() {
		co := &c.coalescer
		co.mu.Lock()
		delete(co.batches, b)
		co.mu.Unlock()
		b.cancel()
	}()
	// Runs before the next batch is sent (rpcDone above): callers that
	// loop, the usual shape of a producer, are runnable again once they
	// have their outcomes, and yielding lets them queue for the next batch
	// rather than the one after it. Without it a closed loop of writers
	// settles into alternating batches (63 calls, then 1, then 63...), half
	// the records per RPC: 64 writers on the 2-core test machine made
	// 21-24k records/s without the yield, 27-43k with it. A yield, not a
	// timer: with nothing else to run it returns at once.
	defer runtime.Gosched()
	if len(b.calls) == 1 {
		offset, err := c.produceOne(ctx, b.topic, b.calls[0].value)
		c.finish(b.calls[0], offset, err)
		return
	}
	values := make([][]byte, len(b.calls))
	for i, call := range b.calls {
		values[i] = call.value
	}
	first, attempts, err := c.produceBatch(ctx, "produce", b.topic, values)
	if err != nil && attempts == 1 && refusedForARecord(err) {
		// The server refused the batch before appending any of it (it
		// checks sizes before it proposes anything, so the sequence the
		// batch carried was never taken either), and no earlier attempt
		// can have appended it: send each call alone, so only a bad
		// record fails. Each takes a producer session of its own (the
		// batch's was dropped with the error), in arrival order.
		c.logger.Debug("coalesced batch refused; sending its calls one by one",
			zap.Int("calls", len(b.calls)), zap.Error(err))
		for _, call := range b.calls {
			if c.callLeft(call) {
				continue
			}
			offset, err := c.produceOne(ctx, b.topic, call.value)
			c.finish(call, offset, err)
		}
		return
	}
	co := &c.coalescer
	co.mu.Lock()
	defer co.mu.Unlock()
	for i, call := range b.calls {
		c.finishLocked(call, first+uint64(i), err)
	}
}

// refusedForARecord reports whether a batch was refused for what one of its
// records holds, not for something true of every call in it: a record over
// the server's size limit, or a batch over its limits (InvalidArgument), or
// a message over the server's receive limit (ResourceExhausted, from gRPC
// itself). PermissionDenied, NotFound and the rest apply to every call of a
// batch alike: its calls share topic and client.
func refusedForARecord(err error) bool {
	code := status.Code(err)
	return code == codes.InvalidArgument || code == codes.ResourceExhausted
}

// callLeft reports whether call's caller stopped waiting.
func (c *Client) callLeft(call *produceCall) bool {
	c.coalescer.mu.Lock()
	defer c.coalescer.mu.Unlock()
	return call.left
}

// finish hands call its outcome.
func (c *Client) finish(call *produceCall, offset uint64, err error) {
	c.coalescer.mu.Lock()
	defer c.coalescer.mu.Unlock()
	c.finishLocked(call, offset, err)
}

// finishLocked is finish with coalescer.mu held.
func (c *Client) finishLocked(call *produceCall, offset uint64, err error) {
	if err != nil {
		offset = 0
	}
	call.offset, call.err = offset, err
	if !call.left {
		call.batch.waiting--
	}
	close(call.done)
}

// closeCoalescer fails the queued calls, ends the batches being sent, and
// waits for their goroutines. Lone calls in flight end with the connection.
func (c *Client) closeCoalescer() {
	co := &c.coalescer
	co.mu.Lock()
	co.closed = true
	for _, q := range co.topics {
		for _, call := range q.queued {
			call.err = fmt.Errorf("loadbalance: produce: %w", ErrClosed)
			close(call.done)
		}
		q.queued = nil
	}
	for b := range co.batches {
		b.cancel()
	}
	co.mu.Unlock()
	co.senders.Wait()
}

// produceOne makes one Produce RPC for value, retried, with a producer
// session of its own: Produce without coalescing.
func (c *Client) produceOne(ctx context.Context, topic string, value []byte) (uint64, error) {
	var offset uint64
	producer := c.takeProducer()
	id, seq := producer.fields()
	err := c.retry(ctx, "produce", true, func(ctx context.Context) error {
		resp, err := c.log.Produce(ctx, &api.ProduceRequest{Topic: topic, Record: &api.Record{Value: value}, ProducerId: id, Sequence: seq})
		if err != nil {
			return err
		}
		offset = resp.GetOffset()
		if resp.GetDuplicate() {
			c.logger.Debug("retried write was appended before; original offset returned", zap.Uint64("offset", offset))
		}
		return nil
	})
	c.giveProducer(producer, err)
	return offset, err
}

// produceBatch makes one ProduceBatch RPC for values, retried, with one
// producer session and sequence for every attempt. It returns the first
// offset and how many attempts were made (1: the answer, or error, came
// from the only request sent).
func (c *Client) produceBatch(ctx context.Context, op, topic string, values [][]byte) (first uint64, attempts int, err error) {
	records := make([]*api.Record, len(values))
	for i, v := range values {
		records[i] = &api.Record{Value: v}
	}
	producer := c.takeProducer()
	id, seq := producer.fields()
	err = c.retry(ctx, op, true, func(ctx context.Context) error {
		attempts++
		resp, err := c.log.ProduceBatch(ctx, &api.ProduceBatchRequest{Topic: topic, Records: records, ProducerId: id, Sequence: seq})
		if err != nil {
			return err
		}
		if resp.GetCount() != uint64(len(values)) {
			return fmt.Errorf("loadbalance: %s: server appended %d records, want %d", op, resp.GetCount(), len(values))
		}
		first = resp.GetFirstOffset()
		if resp.GetDuplicate() {
			c.logger.Debug("retried batch was appended before; original offsets returned", zap.Uint64("first_offset", first))
		}
		return nil
	})
	// An error drops the session (giveProducer): its state on the cluster
	// is unknown, or, for a refused batch, its sequence was never taken,
	// and the next sequence would be a gap.
	c.giveProducer(producer, err)
	return first, attempts, err
}
