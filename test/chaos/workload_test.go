package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// Kinds of operation in a history.
const (
	opProduce = "produce"
	opBatch   = "batch"
	opStream  = "stream"
	opRead    = "read"
)

// Outcomes of an operation.
const (
	outcomeOK      = "ok"
	outcomeError   = "error"   // failed, every attempt refused before it could write
	outcomeUnknown = "unknown" // failed in a way that may have written
	outcomeOOR     = "out-of-range"
)

// op is one recorded operation.
type op struct {
	Client  int       `json:"client"`
	Kind    string    `json:"kind"`
	Values  []string  `json:"values,omitempty"` // written, in order; for a read, the value read
	Offset  uint64    `json:"offset"`           // first offset written, or offset read
	Invoke  time.Time `json:"invoke"`
	Return  time.Time `json:"return"`
	Outcome string    `json:"outcome"`
	Err     string    `json:"err,omitempty"`
}

// history collects operations from every client.
type history struct {
	mu  sync.Mutex
	ops []op // Guarded by mu.

	// attempts counts, per value, the attempts sent to a server whose
	// outcome was unknown (not a refusal the server or the picker gave
	// before the write could land). Guarded by mu.
	unknownAttempts map[string]int
	// lastAcked is the highest offset acknowledged so far (+1); reads aim
	// near it.
	lastAcked atomic.Uint64
	// acks counts acknowledged writes, for progress checks.
	acks atomic.Int64
	// streamSends counts the sends of each ProduceStream value
	// (*atomic.Int64 by value; values are unique per run).
	streamSends sync.Map
}

func newHistory() *history {
	return &history{unknownAttempts: make(map[string]int)}
}

func (h *history) add(o op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
	if o.Kind != opRead && o.Outcome == outcomeOK {
		h.acks.Add(1)
		end := o.Offset + uint64(len(o.Values))
		for {
			cur := h.lastAcked.Load()
			if end <= cur || h.lastAcked.CompareAndSwap(cur, end) {
				break
			}
		}
	}
}

func (h *history) snapshot() []op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]op(nil), h.ops...)
}

// okCompletions returns the completion times of acknowledged writes.
func (h *history) okCompletions() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Time
	for _, o := range h.ops {
		if o.Kind != opRead && o.Outcome == outcomeOK {
			out = append(out, o.Return)
		}
	}
	return out
}

func (h *history) noteUnknownAttempt(values []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range values {
		h.unknownAttempts[v]++
	}
}

func (h *history) unknownAttemptsOf(v string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unknownAttempts[v]
}

// save writes the history as JSON lines to path.
func (h *history) save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, o := range h.snapshot() {
		if err := enc.Encode(o); err != nil {
			_ = f.Close()
			return err
		}
	}
	return f.Close()
}

// definiteRefusal reports whether a failed attempt surely did not write:
// the picker refused it before sending (its errors start "loadbalance:"),
// or a follower refused it with NOT_LEADER.
func definiteRefusal(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	if nl, notLeader := api.NotLeaderFromStatus(st); notLeader {
		// Leadership lost with the write in flight: it may commit.
		return !nl.OutcomeUnknown
	}
	return st.Code() == codes.Unavailable && len(st.Message()) > 12 && st.Message()[:12] == "loadbalance:"
}

// attemptRecorder returns dial options whose interceptors note, per value,
// every write attempt whose outcome is unknown, and every value a stream
// sends more than once (resent after a break: the first send's fate is
// unknown).
func attemptRecorder(h *history) []grpc.DialOption {
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil || definiteRefusal(err) {
			return err
		}
		switch r := req.(type) {
		case *api.ProduceRequest:
			h.noteUnknownAttempt([]string{string(r.GetRecord().GetValue())})
		case *api.ProduceBatchRequest:
			var values []string
			for _, rec := range r.GetRecords() {
				values = append(values, string(rec.GetValue()))
			}
			h.noteUnknownAttempt(values)
		}
		return err
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || method != api.Log_ProduceStream_FullMethodName {
			return cs, err
		}
		return &sendRecorder{ClientStream: cs, h: h}, nil
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(unary), grpc.WithChainStreamInterceptor(stream)}
}

// sendRecorder counts the values a ProduceStream sends.
type sendRecorder struct {
	grpc.ClientStream
	h *history
}

func (s *sendRecorder) SendMsg(m any) error {
	if req, ok := m.(*api.ProduceRequest); ok {
		v := string(req.GetRecord().GetValue())
		n, _ := s.h.streamSends.LoadOrStore(v, new(atomic.Int64))
		if n.(*atomic.Int64).Add(1) > 1 {
			s.h.noteUnknownAttempt([]string{v})
		}
	}
	return s.ClientStream.SendMsg(m)
}

// workload runs writers and a reader until stopped.
type workload struct {
	h      *history
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// streamed is what a ConsumeStream consumer received, in order, and
	// streamErr why its stream ended early (nil when stopped). Guarded
	// by streamMu.
	streamMu  sync.Mutex
	streamed  []streamedRecord
	streamErr error
}

// streamedRecord is one record a ConsumeStream consumer received.
type streamedRecord struct {
	offset uint64
	value  string
}

// workloadOptions: how many writers of each kind, and the pause between
// one writer's operations (CPU is shared: the harness must not starve the
// nodes).
type workloadOptions struct {
	produce, batch, stream, readers int
	pause                           time.Duration
}

// startWorkload starts the writers, each with its own long-lived client
// (as a user's service would have), and readers.
func startWorkload(c *cluster, h *history, opts workloadOptions) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{h: h, cancel: cancel}
	id := 0
	spawn := func(n int, run func(ctx context.Context, client *loadbalance.Client, id int)) {
		for range n {
			id++
			client := c.newClient(loadbalance.Config{DialOptions: attemptRecorder(h)})
			w.wg.Add(1)
			go func(id int) {
				defer w.wg.Done()
				defer client.Close()
				run(ctx, client, id)
			}(id)
		}
	}
	spawn(opts.produce, func(ctx context.Context, client *loadbalance.Client, id int) {
		for seq := 0; ctx.Err() == nil; seq++ {
			v := fmt.Sprintf("p%d-%d", id, seq)
			o := op{Client: id, Kind: opProduce, Values: []string{v}, Invoke: time.Now()}
			off, err := client.Produce(context.Background(), []byte(v))
			w.finish(&o, off, err)
			pause(ctx, opts.pause)
		}
	})
	spawn(opts.batch, func(ctx context.Context, client *loadbalance.Client, id int) {
		rng := rand.New(rand.NewPCG(uint64(id), 7))
		for seq := 0; ctx.Err() == nil; seq++ {
			n := 1 + rng.IntN(5)
			values := make([]string, n)
			raw := make([][]byte, n)
			for k := range values {
				values[k] = fmt.Sprintf("b%d-%d-%d", id, seq, k)
				raw[k] = []byte(values[k])
			}
			o := op{Client: id, Kind: opBatch, Values: values, Invoke: time.Now()}
			off, err := client.ProduceBatch(context.Background(), raw)
			w.finish(&o, off, err)
			pause(ctx, opts.pause)
		}
	})
	spawn(opts.stream, func(ctx context.Context, client *loadbalance.Client, id int) {
		for seq := 0; ctx.Err() == nil; {
			seq = w.runStream(ctx, client, id, seq, opts.pause)
		}
	})
	spawn(opts.readers, func(ctx context.Context, client *loadbalance.Client, id int) {
		rng := rand.New(rand.NewPCG(uint64(id), 11))
		for ctx.Err() == nil {
			end := h.lastAcked.Load()
			off := uint64(max(0, int64(end)-8+rng.Int64N(11)))
			o := op{Client: id, Kind: opRead, Offset: off, Invoke: time.Now()}
			callCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			rec, err := client.Consume(callCtx, off)
			cancel()
			o.Return = time.Now()
			switch {
			case err == nil:
				o.Outcome, o.Values = outcomeOK, []string{string(rec.GetValue())}
				h.add(o)
			case status.Code(err) == codes.OutOfRange:
				o.Outcome = outcomeOOR
				h.add(o)
			}
			// Other errors: a read that failed wrote nothing and says
			// nothing; it is left out of the history.
			pause(ctx, opts.pause)
		}
	})
	// One consumer follows the log from 0 with ConsumeStream through every
	// fault: it must see each offset once, in order.
	client := c.newClient(loadbalance.Config{StreamResumeTimeout: 5 * time.Minute})
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer client.Close()
		err := client.ConsumeStream(ctx, 0, func(rec *api.Record) error {
			w.streamMu.Lock()
			defer w.streamMu.Unlock()
			w.streamed = append(w.streamed, streamedRecord{offset: rec.GetOffset(), value: string(rec.GetValue())})
			return nil
		})
		if ctx.Err() == nil {
			w.streamMu.Lock()
			w.streamErr = err
			w.streamMu.Unlock()
		}
	}()
	return w
}

// checkStream compares what the ConsumeStream consumer received with the
// final log: offsets 0, 1, 2, … once each, with the log's values.
func (w *workload) checkStream(final []string) []string {
	w.streamMu.Lock()
	defer w.streamMu.Unlock()
	var problems []string
	if w.streamErr != nil {
		problems = append(problems, fmt.Sprintf("ConsumeStream ended: %v", w.streamErr))
	}
	for i, r := range w.streamed {
		switch {
		case r.offset != uint64(i):
			problems = append(problems, fmt.Sprintf("ConsumeStream record #%d has offset %d", i, r.offset))
		case r.offset >= uint64(len(final)) || final[r.offset] != r.value:
			problems = append(problems, fmt.Sprintf("ConsumeStream offset %d held %q, the log %q", r.offset, r.value, at(final, r.offset)))
		}
		if len(problems) > 10 {
			break
		}
	}
	return problems
}

func at(values []string, off uint64) string {
	if off < uint64(len(values)) {
		return values[off]
	}
	return "nothing"
}

// streamedCount is how many records the consumer received.
func (w *workload) streamedCount() int {
	w.streamMu.Lock()
	defer w.streamMu.Unlock()
	return len(w.streamed)
}

// finish records a unary write's outcome: an error is definite only when
// every attempt was refused before it could write.
func (w *workload) finish(o *op, offset uint64, err error) {
	o.Return = time.Now()
	switch {
	case err == nil:
		o.Outcome, o.Offset = outcomeOK, offset
	case w.h.unknownAttemptsOf(o.Values[0]) == 0:
		o.Outcome, o.Err = outcomeError, err.Error()
	default:
		// The client gave up; an attempt may still have landed.
		o.Outcome, o.Err = outcomeUnknown, err.Error()
	}
	w.h.add(*o)
}

// runStream writes on one ProduceStream until it fails or ctx ends, and
// returns the next sequence number. Values whose offsets never came back
// are recorded as unknown.
func (w *workload) runStream(ctx context.Context, client *loadbalance.Client, id, seq int, every time.Duration) int {
	stream, err := client.ProduceStream(context.Background())
	if err != nil {
		pause(ctx, time.Second)
		return seq
	}
	defer stream.Close()
	type sent struct {
		value  string
		invoke time.Time
	}
	queue := make(chan sent, loadbalance.DefaultProduceStreamWindow)
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		defer close(queue)
		for ctx.Err() == nil {
			v := fmt.Sprintf("s%d-%d", id, seq)
			seq++
			s := sent{value: v, invoke: time.Now()}
			if err := stream.Send([]byte(v)); err != nil {
				return // Recv reports why
			}
			queue <- s
			pause(ctx, every)
		}
		_ = stream.CloseSend()
	}()
	for s := range queue {
		off, err := stream.Recv()
		o := op{Client: id, Kind: opStream, Values: []string{s.value}, Invoke: s.invoke, Return: time.Now()}
		if err != nil {
			o.Outcome, o.Err = outcomeUnknown, err.Error()
			w.h.add(o)
			if errors.Is(err, io.EOF) {
				continue
			}
			// The stream failed: everything queued after is unknown too.
			for rest := range queue {
				w.h.add(op{Client: id, Kind: opStream, Values: []string{rest.value}, Invoke: rest.invoke,
					Return: time.Now(), Outcome: outcomeUnknown, Err: err.Error()})
			}
			break
		}
		o.Outcome, o.Offset = outcomeOK, off
		w.h.add(o)
	}
	<-sendDone
	return seq
}

// stop ends the workload and waits for it.
func (w *workload) stop() {
	w.cancel()
	w.wg.Wait()
}

// pause waits d or until ctx ends: the writers' pacing, not a
// synchronisation.
func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
