package loadbalance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	api "github.com/proglog/proglog/api/v1"
)

// DefaultProduceStreamWindow is how many values a ProduceStream holds sent
// but not yet acknowledged before Send blocks.
const DefaultProduceStreamWindow = 1024

// ErrProduceStreamClosed is returned by Send after CloseSend or Close.
var ErrProduceStreamClosed = errors.New("loadbalance: produce stream closed for sending")

// ProduceStream is a stream of writes to the leader that survives leader
// changes and lost connections: made by Client.ProduceStream. Send and Recv
// may be called from different goroutines (one of each at a time, like a
// gRPC stream); Close from any.
type ProduceStream struct {
	c      *Client
	topic  string          // every value's topic; "" is the default topic
	ctx    context.Context // the caller's; ends the stream
	cancel context.CancelFunc
	logger *zap.Logger

	// results carries the offsets, in the order of Send; closed by run when
	// the stream ends, after err is set.
	results chan uint64
	// slots bounds the values sent and not acknowledged: Send takes one,
	// an acknowledgement gives it back.
	slots chan struct{}
	done  chan struct{} // closed when run has returned

	// sendMu serialises writes to the current gRPC stream; run holds it
	// while it resends the unacknowledged values on a new stream, so a
	// concurrent Send lands after them.
	sendMu sync.Mutex

	mu sync.Mutex // guards the fields below
	// stream is the current gRPC stream; nil while none is open.
	stream grpc.BidiStreamingClient[api.ProduceRequest, api.ProduceResponse]
	// cancelStream ends the current stream with a cause.
	cancelStream context.CancelCauseFunc
	// pending are the values sent on some stream and not acknowledged, in
	// order, with their sequences; they are resent on every new stream
	// with the same sequences, so the leader appends none twice.
	pending []pendingValue
	// producer is the stream's idempotent producer id (0: none); next is
	// the sequence of the next value sent.
	producer, next uint64
	// stalledSince is when the oldest pending value was last waiting for
	// nothing else: the later of its Send and the last acknowledgement.
	stalledSince time.Time
	closedSend   bool
	err          error // why the stream ended; set before results closes
}

// pendingValue is a value sent and not acknowledged, and its sequence.
type pendingValue struct {
	value    []byte
	sequence uint64
}

// request is the ProduceRequest that sends v.
func (s *ProduceStream) request(v pendingValue) *api.ProduceRequest {
	return &api.ProduceRequest{Topic: s.topic, Record: &api.Record{Value: v.value}, ProducerId: s.producer, Sequence: v.sequence}
}

// ProduceStream opens a write stream to the leader. Send values on it and
// Recv their offsets, in order; CloseSend, then Recv until io.EOF, to be
// sure every value was written.
//
// The stream fails over: when it breaks (codes.Unavailable, the server
// stopping, no answer within AttemptTimeout while values are waiting, or
// the resolver naming a new leader), a new one is opened on the leader the
// resolver then names and every value not yet acknowledged is sent again,
// in order. It gives up when RetryTimeout passes without an
// acknowledgement or a stream opening; Recv then returns the error. Send
// blocks while DefaultProduceStreamWindow values wait for acknowledgement.
//
// Exactly once: the stream is an idempotent producer of its own (unless
// Config.NotIdempotent is set) and every value carries its sequence, the
// same when resent, so a value the old leader appended is not appended
// again: Recv returns its original offset. That holds while the cluster
// remembers it (see Produce); a resend older than that ends the stream
// with codes.FailedPrecondition. With NotIdempotent a value resent after a
// break may be appended twice, and Recv returns the last copy's offset.
//
// WithTopic writes the stream's values to a topic other than the default
// one.
func (c *Client) ProduceStream(ctx context.Context, opts ...CallOption) (*ProduceStream, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &ProduceStream{
		c:       c,
		topic:   applyCallOptions(opts).topic,
		ctx:     ctx,
		cancel:  cancel,
		logger:  c.logger.With(zap.String("op", "produce stream")),
		results: make(chan uint64, DefaultProduceStreamWindow),
		slots:   make(chan struct{}, DefaultProduceStreamWindow),
		done:    make(chan struct{}),
	}
	if p := c.takeProducer(); p != nil {
		// The stream's own producer, never given back: its sequences are
		// the stream's.
		s.producer = p.id
		s.next = p.next
	}
	go s.run()
	return s, nil
}

// Send queues value for the leader. It blocks while the window is full, and
// fails once the stream has ended (Recv says why) or was closed for sending.
func (s *ProduceStream) Send(value []byte) error {
	select {
	case <-s.done:
		return s.endErr()
	default:
	}
	select {
	case s.slots <- struct{}{}:
	case <-s.done:
		return s.endErr()
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.closedSend || s.err != nil {
		err := s.err
		s.mu.Unlock()
		<-s.slots
		if err != nil {
			return err
		}
		return ErrProduceStreamClosed
	}
	if len(s.pending) == 0 {
		s.stalledSince = time.Now()
	}
	pv := pendingValue{value: value, sequence: s.next}
	s.next++
	s.pending = append(s.pending, pv)
	stream, cancelStream := s.stream, s.cancelStream
	s.mu.Unlock()
	if stream == nil {
		return nil // run sends it with the rest when a stream opens
	}
	if err := stream.Send(s.request(pv)); err != nil && !errors.Is(err, io.EOF) {
		// io.EOF means the stream broke; Recv on it tells run why. Any
		// other error is the client's own refusal (too large a message)
		// and ends this stream with it.
		cancelStream(err)
	}
	return nil
}

// Recv returns the offset of the next value sent, in order. After CloseSend
// it returns io.EOF once every value is acknowledged; when the stream failed
// it returns why.
func (s *ProduceStream) Recv() (uint64, error) {
	offset, ok := <-s.results
	if !ok {
		return 0, s.endErr()
	}
	return offset, nil
}

// CloseSend says no more values will be sent. Values already sent are
// still written (and resent on failover); Recv returns io.EOF after the
// last one's offset.
func (s *ProduceStream) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	s.closedSend = true
	stream := s.stream
	s.mu.Unlock()
	if stream != nil {
		// An error means the stream broke; run reopens it and closes the
		// new one for sending.
		_ = stream.CloseSend()
	}
	return nil
}

// Close abandons the stream: values not yet acknowledged may or may not be
// written. It waits for the stream's goroutine. Safe to call more than once.
func (s *ProduceStream) Close() {
	s.cancel()
	<-s.done
}

// Unacknowledged returns how many values were sent and not acknowledged;
// after the stream failed, these are the values whose fate is unknown.
func (s *ProduceStream) Unacknowledged() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// endErr is the error Send and Recv report once run has returned.
func (s *ProduceStream) endErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return io.EOF
	}
	return s.err
}

// run owns the gRPC streams: it opens one, receives its acknowledgements,
// and on a break opens another and resends, until the stream is done or
// fails.
func (s *ProduceStream) run() {
	defer close(s.done)
	defer close(s.results)
	err := s.loop()
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.cancel()
}

// loop returns io.EOF when every value was acknowledged after CloseSend, or
// the error that ended the stream.
func (s *ProduceStream) loop() error {
	bo := s.c.newBackoff()
	lastProgress := time.Now()
	var lastErr error
	for attempt := 1; ; attempt++ {
		streamCtx, cancelStream := context.WithCancelCause(s.ctx)
		err := s.open(streamCtx, cancelStream)
		if err == nil {
			lastProgress = time.Now()
			var acked bool
			acked, err = s.receive(streamCtx)
			if acked {
				lastProgress = time.Now()
				bo.reset()
			}
		}
		if cause := context.Cause(streamCtx); err != nil && cause != nil && s.ctx.Err() == nil &&
			!errors.Is(cause, context.Canceled) && !retryable(cause) {
			err = cause // Send's own failure, e.g. a value over the size limit
		}
		cancelStream(nil)
		s.mu.Lock()
		s.stream, s.cancelStream = nil, nil
		finished := s.closedSend && len(s.pending) == 0
		s.mu.Unlock()
		switch {
		case finished && (err == nil || errors.Is(err, io.EOF)):
			return io.EOF
		case s.ctx.Err() != nil:
			return s.ctx.Err()
		case !resumable(err):
			return fmt.Errorf("loadbalance: produce stream: %w", err)
		}
		lastErr = err
		if time.Since(lastProgress) > s.c.cfg.RetryTimeout {
			return fmt.Errorf("loadbalance: produce stream: gave up after %d attempts with no progress for %v: %w",
				attempt, s.c.cfg.RetryTimeout, lastErr)
		}
		if s.c.nothingListens(lastProgress, err) {
			return fmt.Errorf("loadbalance: produce stream: %w (%w)", err, ErrNothingListens)
		}
		s.logger.Info("produce stream broke; resending on a new one", zap.Int("unacknowledged", s.Unacknowledged()), zap.Error(err))
		s.c.builder.ResolveNow()
		if err := bo.wait(s.ctx); err != nil {
			return err
		}
	}
}

// open opens a gRPC stream on the leader and resends the pending values on
// it, holding sendMu so that no new value overtakes them.
func (s *ProduceStream) open(ctx context.Context, cancel context.CancelCauseFunc) error {
	stream, err := s.c.log.ProduceStream(ctx)
	if err != nil {
		return s.c.attemptError(ctx, err)
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	s.stream, s.cancelStream = stream, cancel
	resend := append([]pendingValue(nil), s.pending...)
	closedSend := s.closedSend
	if len(resend) > 0 {
		s.stalledSince = time.Now()
	}
	s.mu.Unlock()
	for _, v := range resend {
		if err := stream.Send(s.request(v)); err != nil {
			// Broken already: Recv in receive reports why.
			return nil
		}
	}
	if closedSend {
		_ = stream.CloseSend()
	}
	return nil
}

// receive hands the stream's acknowledgements to Recv until the stream
// ends. A watchdog asks the resolver for the leader when values wait a
// quarter of AttemptTimeout, and ends the stream when they wait all of it;
// a leader change ends it at once. acked reports whether any value was
// acknowledged.
func (s *ProduceStream) receive(ctx context.Context) (acked bool, err error) {
	s.mu.Lock()
	stream, cancel := s.stream, s.cancelStream
	s.mu.Unlock()
	stop := s.c.builder.onLeaderChange(func() { cancel(errLeaderChanged) })
	defer stop()
	watchdogDone := make(chan struct{})
	defer close(watchdogDone)
	go s.watchdog(watchdogDone, cancel)

	for {
		resp, err := stream.Recv()
		if err != nil {
			return acked, s.c.attemptError(ctx, err)
		}
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			return acked, errors.New("loadbalance: produce stream: the server acknowledged more values than were sent")
		}
		s.pending = s.pending[1:]
		s.stalledSince = time.Now()
		s.mu.Unlock()
		acked = true
		select {
		case s.results <- resp.GetOffset():
		case <-s.ctx.Done():
			return acked, s.ctx.Err()
		}
		<-s.slots
	}
}

// watchdog checks, every quarter of AttemptTimeout until done closes,
// whether values have waited that long for an acknowledgement.
func (s *ProduceStream) watchdog(done <-chan struct{}, cancel context.CancelCauseFunc) {
	quarter := s.c.cfg.AttemptTimeout / 4
	ticker := time.NewTicker(quarter)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
		}
		s.mu.Lock()
		waiting := len(s.pending) > 0
		stalled := time.Since(s.stalledSince)
		s.mu.Unlock()
		switch {
		case !waiting:
		case stalled >= s.c.cfg.AttemptTimeout:
			cancel(ErrAttemptTimeout)
			return
		case stalled >= quarter:
			s.c.builder.ResolveNow()
		}
	}
}
