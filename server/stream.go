package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"

	api "github.com/proglog/proglog/api/v1"
)

// ConsumeStream sends every record of the request's topic from the requested
// offset on, then waits for new ones (woken by CommitLog.Appended, never by polling) until the
// client cancels or Config.Stopping is closed (codes.Unavailable).
//
// Without max_records (the book's clients) each response carries one
// record, in record. With it each carries, in records, what the log holds
// from the next offset up to the request's limits capped by
// Config.MaxConsumeRecords and MaxConsumeBytes (CommitLog.ReadBatch): full
// batches while the consumer is behind, and whatever has arrived, without
// waiting for more, once it has caught up.
//
// It holds one response at a time: stream.Send blocks while the client's
// gRPC flow-control window is full, so a slow consumer slows the reads
// instead of making the server buffer.
func (s *logService) ConsumeStream(req *api.ConsumeRequest, stream grpc.ServerStreamingServer[api.ConsumeResponse]) error {
	ctx := stream.Context()
	topic, err := s.authorizeTopic(ctx, req.GetTopic(), ConsumeAction)
	if err != nil {
		return s.status(err)
	}
	limits, err := s.consumeLimits(req)
	if err != nil {
		return s.status(err)
	}
	start := req.GetOffset()
	if group := req.GetGroup(); group != "" {
		// The group's committed offset, when it has one: the next record
		// it will process.
		committed, err := fetchOffset(ctx, s.cfg, group, topic)
		switch {
		case err == nil:
			start = committed
		case !errors.Is(err, api.ErrGroupNotFound):
			return s.status(err)
		}
	}
	if req.GetFromLowest() {
		// Records below the lowest offset were deleted by retention: start
		// at the first one held.
		info, err := s.cfg.CommitLog.DescribeTopic(ctx, topic)
		if err != nil {
			return s.status(err)
		}
		start = max(start, info.GetLowestOffset())
	}
	// Headers now, before any record: they tell the client the stream is
	// open even while it waits for records (loadbalance.Client counts a
	// resumed stream as working from then on).
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	if !limits.batched {
		for offset := start; ; offset++ {
			var record *api.Record
			err := s.waitFor(ctx, topic, func() (err error) {
				record, err = s.cfg.CommitLog.Read(ctx, topic, offset)
				return err
			})
			if err != nil {
				return s.status(err)
			}
			if err := stream.Send(&api.ConsumeResponse{Record: record}); err != nil {
				// The stream is broken (client gone, server stopped); the error
				// already carries the status gRPC will report.
				return err
			}
		}
	}
	for offset := start; ; {
		var records []*api.Record
		err := s.waitFor(ctx, topic, func() (err error) {
			records, err = s.readBatch(ctx, topic, offset, limits)
			return err
		})
		if err != nil {
			return s.status(err)
		}
		if err := stream.Send(&api.ConsumeResponse{Records: records}); err != nil {
			return err
		}
		offset += uint64(len(records))
	}
}

// consumeLimits are a consume request's batch limits, capped by the
// server's.
type consumeLimits struct {
	// batched is set when the request asked for batches (max_records).
	batched    bool
	maxRecords int
	maxBytes   uint64
}

// consumeLimits reads a ConsumeRequest's max_records and max_bytes: a
// request asking for more than Config.MaxConsumeRecords or MaxConsumeBytes
// gets those, max_bytes 0 gets MaxConsumeBytes, and max_bytes without
// max_records is ErrInvalidRequest (it would silently mean nothing).
func (s *logService) consumeLimits(req *api.ConsumeRequest) (consumeLimits, error) {
	maxRecords, maxBytes := req.GetMaxRecords(), req.GetMaxBytes()
	if maxRecords == 0 {
		if maxBytes != 0 {
			return consumeLimits{}, fmt.Errorf("%w: max_bytes %d without max_records: set max_records to receive batches",
				ErrInvalidRequest, maxBytes)
		}
		return consumeLimits{}, nil
	}
	limits := consumeLimits{
		batched:    true,
		maxRecords: int(min(uint64(maxRecords), uint64(s.cfg.MaxConsumeRecords))),
		maxBytes:   uint64(s.cfg.MaxConsumeBytes),
	}
	if maxBytes != 0 {
		limits.maxBytes = min(limits.maxBytes, uint64(maxBytes))
	}
	return limits, nil
}

// readBatch reads a batch of topic from offset within limits, and checks
// the log kept its contract: a non-empty batch starting at offset.
func (s *logService) readBatch(ctx context.Context, topic string, offset uint64, limits consumeLimits) ([]*api.Record, error) {
	records, err := s.cfg.CommitLog.ReadBatch(ctx, topic, offset, limits.maxRecords, limits.maxBytes)
	if err != nil {
		return nil, err
	}
	if len(records) == 0 || len(records) > limits.maxRecords || records[0].GetOffset() != offset {
		return nil, fmt.Errorf("server: ReadBatch(%d, %d) returned %d records from offset %d",
			offset, limits.maxRecords, len(records), firstOffset(records))
	}
	return records, nil
}

// firstOffset is the offset of the first record, for messages; 0 when none.
func firstOffset(records []*api.Record) uint64 {
	if len(records) == 0 {
		return 0
	}
	return records[0].GetOffset()
}

// waitFor runs read (a read of topic at some offset) until it finds what it
// reads, waiting for the topic to reach it. It returns ctx's error when the
// call ends, ErrStopping when the server stops, and read's other errors as
// they are: the log's api.TopicNotFoundError when the topic is deleted
// meanwhile (its deletion closes the Appended channel), and out of range
// below the lowest offset (deleted by retention: it will never come, the
// client must start again at the lowest one).
func (s *logService) waitFor(ctx context.Context, topic string, read func() error) error {
	for {
		select {
		case <-s.cfg.Stopping:
			return ErrStopping
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		err := read()
		if !isOutOfRange(err) || belowLowest(err) {
			return err
		}
		// Take the notification before reading again: an append between that
		// read and the wait below then closes the channel we wait on, so it
		// is never missed. Taking it only after a miss keeps the common
		// catch-up path (every read succeeds) free of it.
		appended := s.cfg.CommitLog.Appended(topic)
		err = read()
		if !isOutOfRange(err) || belowLowest(err) {
			return err
		}
		select {
		case <-appended:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.cfg.Stopping:
			return ErrStopping
		}
	}
}

// ProduceStream appends each record it receives and answers with its offset,
// in order. It pipelines: a reader goroutine receives requests into a channel
// of Config.ProduceStreamWindow while the handler starts appends
// (CommitLog.StartAppend) without waiting for the ones before, and answers
// each as its outcome arrives, in order. Up to ProduceStreamWindow records are
// in flight; the requests that queued up meanwhile are started together, and
// the replicated log puts the appends queued while others are in Raft into
// one entry (group commit). One stream's throughput is its records in flight
// per Raft round trip, so the window is large (1024 records by default) and
// the client's own window is what limits it. The reader stops receiving once
// the stream holds ProduceStreamWindowBytes of record values (read ahead or in
// flight) or the channel is full, so gRPC flow control holds the client back:
// a stream holds about that many bytes, and at most two windows of requests,
// in memory.
//
// Each request is its own produce call: an idempotent producer's request
// carries its sequence, and a duplicate is answered with its original offset.
// Requests that queued up together name one topic and stay within the
// ProduceBatch limits (MaxBatchRecords, MaxBatchBytes); each topic is
// authorized once per stream, when a request first names it.
//
// The client's CloseSend is a clean end: every request is answered and the
// call returns OK. An invalid request ends the stream with
// codes.InvalidArgument (a refused topic with codes.PermissionDenied) after
// the valid requests before it are appended and answered. A request whose
// append fails (or whose sequence is refused) ends the stream with its error
// after the requests before it are answered; requests after it that were
// already started may have been appended (an idempotent producer's never: its
// later sequences are refused too). When Config.Stopping is closed the stream
// answers the appends it started and returns codes.Unavailable; requests read
// but not started were not appended.
func (s *logService) ProduceStream(stream grpc.BidiStreamingServer[api.ProduceRequest, api.ProduceResponse]) error {
	ctx := stream.Context()
	// Each request names its topic; each topic is authorized once per
	// stream, not per record.
	topics := newStreamTopics()

	window := s.cfg.ProduceStreamWindow
	requests := make(chan *api.ProduceRequest, window)
	recvErr := make(chan error, 1)
	handlerDone := make(chan struct{})
	// held bounds the record bytes read and not yet answered: the reader
	// takes from it, the handler gives back what it answered.
	held := newStreamBudget(s.cfg.ProduceStreamWindowBytes)
	// The reader belongs to this call. It never blocks on requests or held
	// after handlerDone is closed, and its Recv returns once the handler
	// returns, because gRPC cancels the stream's context then; so it ends
	// with the call.
	defer close(handlerDone)
	go receiveRequests(stream, requests, recvErr, handlerDone, held)

	// A batch is bounded like a ProduceBatch call.
	maxBatch := min(window, s.cfg.MaxBatchRecords)
	// started are the appends in flight, oldest first; inFlight counts
	// their records.
	var started []startedAppend
	inFlight := 0
	// carried was received but did not fit in the last batch.
	var carried *api.ProduceRequest
	// ended: no more requests will be started; endErr is what the stream
	// returns once the started ones are answered (nil: a clean end).
	ended := false
	var endErr error
	// endOfInput records how the reader ended.
	endOfInput := func() {
		ended = true
		if err := <-recvErr; !errors.Is(err, io.EOF) {
			// Recv's error already carries the stream's status.
			endErr = err
		}
	}
	for {
		// Stopping first: with a request also ready, select would pick at
		// random.
		select {
		case <-s.cfg.Stopping:
			return s.answerStarted(ctx, stream, started, s.status(ErrStopping))
		default:
		}

		if !ended && inFlight < window {
			req := carried
			carried = nil
			if req == nil {
				var open bool
				if len(started) == 0 {
					// Nothing to answer: wait for a request.
					select {
					case req, open = <-requests:
					case <-ctx.Done():
						return s.status(ctx.Err())
					case <-s.cfg.Stopping:
						return s.status(ErrStopping)
					}
				} else {
					req, open = tryReceive(requests)
				}
				if !open {
					endOfInput()
				}
			}
			if req != nil {
				next, err := s.startStreamBatch(ctx, topics, req, requests, min(maxBatch, window-inFlight))
				if next.waiter != nil {
					started = append(started, next)
					inFlight += len(next.calls)
				}
				carried = next.carried
				if err != nil {
					ended, endErr = true, err
				}
				if next.closed {
					endOfInput()
				}
				continue
			}
		}

		if len(started) == 0 {
			if ended {
				return endErr
			}
			continue
		}
		// Answer the oldest append when it is done; meanwhile take a new
		// request if there is room for it.
		var in <-chan *api.ProduceRequest
		if !ended && carried == nil && inFlight < window {
			in = requests
		}
		select {
		case <-started[0].waiter.Done():
			if err := s.answerStream(stream, started[0]); err != nil {
				return err
			}
			held.give(started[0].bytes)
			inFlight -= len(started[0].calls)
			started[0] = startedAppend{}
			started = started[1:]
		case req, open := <-in:
			if !open {
				endOfInput()
			} else {
				carried = req
			}
		case <-ctx.Done():
			return s.status(ctx.Err())
		case <-s.cfg.Stopping:
			return s.answerStarted(ctx, stream, started, s.status(ErrStopping))
		}
	}
}

// startedAppend is a ProduceStream batch whose append was started.
type startedAppend struct {
	waiter api.AppendWaiter
	// calls are the batch's requests as produce calls, one each.
	calls []api.ProducerBatch
	// bytes is the sum of the calls' record values.
	bytes int
	// carried is a request received that did not fit the batch (same
	// topic, limits); closed is true when the reader ended meanwhile.
	carried *api.ProduceRequest
	closed  bool
}

// startStreamBatch takes req and the requests that queued up behind it,
// without waiting, up to max records, the batch limits and while they
// name the same topic, stopping at the first invalid or unauthorized one,
// and starts their append. The error is the status that ends the stream: an
// invalid request (the valid ones before it are started), or an append
// refused at once.
func (s *logService) startStreamBatch(ctx context.Context, topics *streamTopics, req *api.ProduceRequest,
	requests <-chan *api.ProduceRequest, max int) (startedAppend, error) {
	var out startedAppend
	var batchTopic string
	var invalid error
	for {
		topic, err := topics.authorize(ctx, s, req.GetTopic())
		if err != nil {
			invalid = err
			break
		}
		record, err := s.checkRecord(req.GetRecord())
		if err != nil {
			invalid = err
			break
		}
		if len(out.calls) > 0 && (topic != batchTopic || out.bytes+len(record.Value) > s.cfg.MaxBatchBytes) {
			out.carried = req
			break
		}
		batchTopic = topic
		out.calls = append(out.calls, api.ProducerBatch{ProducerID: req.GetProducerId(), Sequence: req.GetSequence(),
			Records: []*api.Record{record}})
		out.bytes += len(record.Value)
		if len(out.calls) >= max {
			break
		}
		var open bool
		if req, open = tryReceive(requests); !open || req == nil {
			out.closed = !open
			break
		}
	}
	if len(out.calls) > 0 {
		w, err := s.cfg.CommitLog.StartAppend(ctx, batchTopic, out.calls)
		if err != nil {
			out.calls = nil
			return out, s.status(err)
		}
		out.waiter = w
	}
	if invalid != nil {
		return out, s.status(invalid)
	}
	return out, nil
}

// answerStream sends the answers of a started append whose outcome is
// known, in order: a duplicate with its original offset. A refused request
// ends the stream with its error after the requests before it are
// answered.
func (s *logService) answerStream(stream grpc.BidiStreamingServer[api.ProduceRequest, api.ProduceResponse], a startedAppend) error {
	results, err := a.waiter.Result()
	if err != nil {
		return s.status(err)
	}
	if len(results) != len(a.calls) {
		return s.status(fmt.Errorf("server: %d outcomes for %d requests", len(results), len(a.calls)))
	}
	for _, r := range results {
		if r.Err != nil {
			return s.status(r.Err)
		}
		if err := stream.Send(&api.ProduceResponse{Offset: r.First, Duplicate: r.Duplicate}); err != nil {
			return err
		}
	}
	return nil
}

// answerStarted answers the started appends in order as they finish, then
// returns end (the stream's end status); an append that failed ends it
// with its own error instead.
func (s *logService) answerStarted(ctx context.Context, stream grpc.BidiStreamingServer[api.ProduceRequest, api.ProduceResponse],
	started []startedAppend, end error) error {
	for _, a := range started {
		select {
		case <-a.waiter.Done():
		case <-ctx.Done():
			return s.status(ctx.Err())
		}
		if err := s.answerStream(stream, a); err != nil {
			return err
		}
	}
	return end
}

// maxStreamTopics bounds the topics one ProduceStream remembers as
// authorized; past it the set starts over (a stream writing to more topics
// than this is authorized again as it goes, which is correct, only slower).
const maxStreamTopics = 1024

// streamTopics remembers the topics one ProduceStream was authorized to
// produce to. It belongs to the stream's handler goroutine.
type streamTopics struct {
	authorized map[string]struct{}
}

func newStreamTopics() *streamTopics {
	return &streamTopics{authorized: make(map[string]struct{})}
}

// authorize returns the topic a request names (empty: the default topic)
// once the stream's subject may produce to it.
func (t *streamTopics) authorize(ctx context.Context, s *logService, requested string) (string, error) {
	topic := api.TopicOrDefault(requested)
	if _, ok := t.authorized[topic]; ok {
		return topic, nil
	}
	topic, err := s.authorizeTopic(ctx, requested, ProduceAction)
	if err != nil {
		return "", err
	}
	if len(t.authorized) >= maxStreamTopics {
		clear(t.authorized)
	}
	t.authorized[topic] = struct{}{}
	return topic, nil
}

// tryReceive returns the next queued request without waiting: nil and true
// when none is queued, nil and false when the channel is closed.
func tryReceive(requests <-chan *api.ProduceRequest) (*api.ProduceRequest, bool) {
	select {
	case req, open := <-requests:
		return req, open
	default:
		return nil, true
	}
}

// receiveRequests receives ProduceStream requests into requests until Recv
// fails (io.EOF after the client's CloseSend), then sends that error on errc
// (buffered) and closes requests. Each request's record value is taken from
// held before it is passed on, so the reader stops receiving while the
// stream holds its byte budget. It gives up when done is closed, so that it
// never blocks on a channel nobody drains.
func receiveRequests(stream grpc.BidiStreamingServer[api.ProduceRequest, api.ProduceResponse],
	requests chan<- *api.ProduceRequest, errc chan<- error, done <-chan struct{}, held *streamBudget) {
	defer close(requests)
	for {
		req, err := stream.Recv()
		if err != nil {
			errc <- err
			return
		}
		if !held.take(len(req.GetRecord().GetValue()), done) {
			return
		}
		select {
		case requests <- req:
		case <-done:
			return
		}
	}
}

// streamBudget bounds the bytes a ProduceStream holds. One goroutine takes
// (the reader), another gives back (the handler).
type streamBudget struct {
	limit int
	// freed wakes a take waiting for room (buffer of one, non-blocking
	// send).
	freed chan struct{}
	mu    sync.Mutex // guards used
	used  int
}

func newStreamBudget(limit int) *streamBudget {
	return &streamBudget{limit: limit, freed: make(chan struct{}, 1)}
}

// take waits until n bytes fit the budget, or nothing is held (a request
// larger than the whole budget goes alone), and takes them. It returns
// false, taking nothing, when done is closed first.
func (b *streamBudget) take(n int, done <-chan struct{}) bool {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
		// A give between the check above and this wait leaves its wake-up
		// in freed, so it is not missed.
		select {
		case <-b.freed:
		case <-done:
			return false
		}
	}
}

// give returns n bytes taken before.
func (b *streamBudget) give(n int) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

// belowLowest reports whether err is a read below the topic's lowest offset.
func belowLowest(err error) bool {
	oor, ok := asOutOfRange(err)
	return ok && oor.BelowLowest
}
