package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// Bench modes.
const (
	benchProduce = "produce"
	benchBatch   = "batch"
	benchStream  = "stream"
	benchConsume = "consume"
	// benchConsumeStream reads with batched ConsumeStreams.
	benchConsumeStream = "consume-stream"
)

// benchSettings are the settings of `proglog bench`.
type benchSettings struct {
	client clientSettings
	// topic is the topic written and read; "" is the default topic.
	topic string
	// mode is one of the bench modes.
	mode string
	// records is how many records to write or read.
	records int
	// size is the bytes of each record value.
	size int
	// concurrency is the number of concurrent callers (streams in stream
	// mode).
	concurrency int
	// batch is records per ProduceBatch (batch mode and the consume mode's
	// setup), records in flight per stream (stream mode) or the most
	// records per response (consume-stream mode).
	batch int
	// json prints the report as one JSON object.
	json bool
	// noCoalesce turns the client's coalescing of concurrent Produce
	// calls off (loadbalance.Config.NoCoalesce): one RPC per record.
	noCoalesce bool
}

// readBenchSettings reads and validates the settings of `proglog bench`.
func readBenchSettings(s *settings) (benchSettings, error) {
	bs := benchSettings{
		client:      readClientSettings(s),
		mode:        s.String(keyMode),
		records:     s.Int(keyRecords),
		size:        s.Int(keySize),
		concurrency: s.Int(keyConcurrency),
		batch:       s.Int(keyBatch),
		json:        s.Bool(keyJSON),
		noCoalesce:  s.Bool(keyNoCoalesce),
	}
	topic, topicErr := readTopic(s)
	if err := s.Err(); err != nil {
		return bs, err
	}
	if topicErr != nil {
		return bs, topicErr
	}
	bs.topic = topic
	switch bs.mode {
	case benchProduce, benchBatch, benchStream, benchConsume, benchConsumeStream:
	default:
		return bs, usageError(fmt.Errorf("--mode %q: want produce, batch, stream, consume or consume-stream", bs.mode))
	}
	switch {
	case bs.records <= 0:
		return bs, usageError(fmt.Errorf("--records %d must be positive", bs.records))
	case bs.size < 0:
		return bs, usageError(fmt.Errorf("--size %d must not be negative", bs.size))
	case bs.concurrency <= 0:
		return bs, usageError(fmt.Errorf("--concurrency %d must be positive", bs.concurrency))
	case bs.batch <= 0:
		return bs, usageError(fmt.Errorf("--batch %d must be positive", bs.batch))
	case bs.noCoalesce && bs.mode != benchProduce:
		return bs, usageError(fmt.Errorf("--no-coalesce applies to --mode produce only, not %s", bs.mode))
	}
	return bs, bs.client.validate()
}

func newBenchCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "bench",
		Short: "Load-test a running cluster and report throughput and latency",
		Long: `Write (or read) --records records of --size bytes with --concurrency concurrent
callers, then report records/s, MB/s (10^6 bytes of record values) and the
latency of each call: p50, p90, p99, p99.9 and max, from an HDR histogram.

Modes:
  produce  one Produce call per record; the client coalesces concurrent
           calls into ProduceBatch RPCs (--no-coalesce: one RPC per call);
           latency is per call, as the caller sees it
  batch    ProduceBatch calls of --batch records; latency is per call
  stream   one ProduceStream per caller, up to --batch records in flight on
           each; it fails over to a new leader and resends what was not
           acknowledged (once), as the other write modes retry; latency is
           from sending a record to its offset coming back
  consume  first writes --records records (not timed), then reads each back
           with one Consume call
  consume-stream
           first writes --records records (not timed), then reads them back
           with batched ConsumeStreams (from followers, as every read):
           --concurrency streams, each over its own share of the records,
           responses of up to --batch records (and the server's byte limit,
           1 MiB by default); latency is per response, from the one before
           (from opening the stream for the first)

A progress bar goes to standard error when it is a terminal. With --json the
report is one JSON object on standard output:
  {"mode", "records", "errors", "seconds", "records_per_sec", "mb_per_sec",
   "latency_ms": {"p50", "p90", "p99", "p999", "max"}}
The command fails when a call failed; records counts the records written or
read, errors the ones that were not. --topic benches a topic made with
'proglog topic create' instead of the default topic.`,
		Example: `  proglog bench                                       # 10,000 Produce calls, 8 at a time
  proglog bench --concurrency 64 --no-coalesce         # one Produce RPC per record
  proglog bench --mode batch --records 100000 --batch 100
  proglog bench --mode stream --concurrency 4 --batch 64
  proglog bench --mode consume --records 20000 --json | jq .records_per_sec
  proglog bench --mode consume-stream --records 1000000 --concurrency 1 --batch 10000`,
		RunE: runBench,
	}, benchOptions())
}

// runBench runs `proglog bench`.
func runBench(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd.Flags(), benchOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	bs, err := readBenchSettings(s)
	if err != nil {
		return err
	}
	logger, err := newLogger(bs.client.logLevel, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	client, err := bs.client.dialWith(logger, func(cfg *loadbalance.Config) { cfg.NoCoalesce = bs.noCoalesce })
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer client.Close()

	ctx := cmd.Context()
	// Fail at once, with one line, when there is no cluster to measure.
	if _, err := client.GetServers(ctx); err != nil {
		return bs.client.rpcError("bench", err)
	}
	b := &bench{
		settings: bs,
		client:   client,
		value:    randomValue(bs.size),
	}
	if bs.mode == benchConsume || bs.mode == benchConsumeStream {
		if err := b.setupConsume(ctx); err != nil {
			return bs.client.rpcError("bench: write the records to read back", err)
		}
	}

	var progress *progressBar
	if isTerminal(cmd.ErrOrStderr()) {
		progress = startProgress(cmd.ErrOrStderr(), int64(bs.records), b.doneCount)
	}
	result, firstErr := b.run(ctx)
	progress.stop()

	if err := writeReport(cmd.OutOrStdout(), bs, result); err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	if result.Errors > 0 {
		return bs.client.rpcError(fmt.Sprintf("bench: %d of %d records failed; the first", result.Errors, bs.records), firstErr)
	}
	return nil
}

// randomValue returns size random letters: the value of every record.
// Letters, not random bytes, so that `proglog consume` after a bench prints
// text rather than garbage on the terminal.
func randomValue(size int) []byte {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	value := make([]byte, size)
	for i := range value {
		value[i] = letters[rand.IntN(len(letters))]
	}
	return value
}

// bench is one run of `proglog bench`. Callers claim records from a shared
// counter, so they finish together whatever their speed.
type bench struct {
	settings benchSettings
	client   *loadbalance.Client
	value    []byte
	// consumeFrom is the offset of the first record the consume mode reads.
	consumeFrom uint64

	claimed atomic.Int64 // records handed to callers
	done    atomic.Int64 // records written or read
	failed  atomic.Int64 // records that failed

	mu       sync.Mutex // guards firstErr
	firstErr error
}

// doneCount is the progress so far: records done or failed.
func (b *bench) doneCount() int64 { return b.done.Load() + b.failed.Load() }

// claim hands out up to n of the remaining records: the index of the first
// and how many, 0 when none are left.
func (b *bench) claim(n int) (first int64, count int) {
	total := int64(b.settings.records)
	end := b.claimed.Add(int64(n))
	first = end - int64(n)
	if first >= total {
		return first, 0
	}
	return first, int(min(end, total) - first)
}

// fail counts n failed records and keeps the first error.
func (b *bench) fail(n int, err error) {
	b.failed.Add(int64(n))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.firstErr == nil {
		b.firstErr = err
	}
}

// setupConsume writes the records the consume modes read back: in batches
// of --batch records (consume mode), or as large as a ProduceBatch the
// server takes by default (consume-stream mode, where --batch is the read
// side's).
func (b *bench) setupConsume(ctx context.Context) error {
	batchSize := min(b.settings.batch, produceBatchRecords)
	if b.settings.mode == benchConsumeStream {
		batchSize = max(1, min(produceBatchRecords, produceBatchBytes/max(1, b.settings.size)))
	}
	values := make([][]byte, batchSize)
	for i := range values {
		values[i] = b.value
	}
	for written := 0; written < b.settings.records; {
		n := min(batchSize, b.settings.records-written)
		first, err := b.client.ProduceBatch(ctx, values[:n], loadbalance.WithTopic(b.settings.topic))
		if err != nil {
			return err
		}
		if written == 0 {
			b.consumeFrom = first
		} else if first != b.consumeFrom+uint64(written) {
			// Someone else is writing: the records are not contiguous.
			return fmt.Errorf("another producer is writing to the cluster (batch at offset %d, want %d)",
				first, b.consumeFrom+uint64(written))
		}
		written += n
	}
	if b.settings.mode == benchConsumeStream {
		return b.waitApplied(ctx)
	}
	return nil
}

// waitApplied reads the last record written a few times, so that the
// followers the reads go to (round-robin) have applied every record
// before the timed reads start: the consume-stream mode measures reading,
// not a follower catching up with the writes (its reads would wait for
// records not applied yet). Best effort: a read that fails is no error.
func (b *bench) waitApplied(ctx context.Context) error {
	servers, err := b.client.GetServers(ctx)
	if err != nil {
		return err
	}
	last := b.consumeFrom + uint64(b.settings.records) - 1
	for range 2 * len(servers) {
		if _, err := b.client.Consume(ctx, last, loadbalance.WithTopic(b.settings.topic)); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// run runs the callers and returns the result and the first error.
func (b *bench) run(ctx context.Context) (benchResult, error) {
	histograms := make([]*latencyHistogram, b.settings.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range histograms {
		h := newLatencyHistogram()
		histograms[i] = h
		wg.Go(func() { b.caller(ctx, h) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	merged := newLatencyHistogram()
	for _, h := range histograms {
		merged.merge(h)
	}
	result := newBenchResult(b.settings.mode, b.done.Load(), b.failed.Load(), elapsed, b.settings.size, merged)
	b.mu.Lock()
	defer b.mu.Unlock()
	return result, b.firstErr
}

// caller is one concurrent caller: it claims records until none are left.
func (b *bench) caller(ctx context.Context, h *latencyHistogram) {
	switch b.settings.mode {
	case benchProduce:
		b.unaryCaller(ctx, h, 1, func(ctx context.Context, _ int64, _ int) error {
			_, err := b.client.Produce(ctx, b.value, loadbalance.WithTopic(b.settings.topic))
			return err
		})
	case benchBatch:
		values := make([][]byte, b.settings.batch)
		for i := range values {
			values[i] = b.value
		}
		b.unaryCaller(ctx, h, b.settings.batch, func(ctx context.Context, _ int64, n int) error {
			_, err := b.client.ProduceBatch(ctx, values[:n], loadbalance.WithTopic(b.settings.topic))
			return err
		})
	case benchConsume:
		b.unaryCaller(ctx, h, 1, func(ctx context.Context, i int64, _ int) error {
			_, err := b.client.Consume(ctx, b.consumeFrom+uint64(i), loadbalance.WithTopic(b.settings.topic))
			return err
		})
	case benchStream:
		b.streamCaller(ctx, h)
	case benchConsumeStream:
		b.consumeStreamCaller(ctx, h)
	}
}

// consumeStreamCaller claims its share of the records (records divided by
// concurrency, the last caller taking the rest) and reads it with one
// batched ConsumeStream (resumed elsewhere if it breaks, as
// loadbalance.Client does), timing each response from the one before.
func (b *bench) consumeStreamCaller(ctx context.Context, h *latencyHistogram) {
	share := max(1, b.settings.records/b.settings.concurrency)
	first, n := b.claim(share)
	if n == 0 {
		return
	}
	if rest := int64(b.settings.records) - (first + int64(n)); rest > 0 && rest < int64(share) {
		// The last caller takes the rest too (records not a multiple of
		// the callers).
		_, more := b.claim(int(rest))
		n += more
	}
	from := b.consumeFrom + uint64(first)
	end := from + uint64(n)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	last := time.Now()
	read := uint64(0)
	err := b.client.ConsumeBatches(ctx, from, func(records []*api.Record) error {
		now := time.Now()
		h.record(now.Sub(last))
		last = now
		got := min(uint64(len(records)), end-(from+read))
		read += got
		b.done.Add(int64(got))
		if from+read >= end {
			return errShareRead
		}
		return nil
	}, loadbalance.WithTopic(b.settings.topic), loadbalance.WithBatches(uint32(min(b.settings.batch, math.MaxUint32)), 0))
	if !errors.Is(err, errShareRead) {
		b.fail(n-int(read), err)
	}
}

// errShareRead ends a consume-stream caller's stream once it has its share.
var errShareRead = errors.New("share read")

// unaryCaller claims per records at a time and makes one timed call for them.
func (b *bench) unaryCaller(ctx context.Context, h *latencyHistogram, per int,
	call func(ctx context.Context, first int64, n int) error) {
	for ctx.Err() == nil {
		first, n := b.claim(per)
		if n == 0 {
			return
		}
		start := time.Now()
		if err := call(ctx, first, n); err != nil {
			b.fail(n, err)
			continue
		}
		h.record(time.Since(start))
		b.done.Add(int64(n))
	}
}

// streamCaller sends records on one ProduceStream, which fails over by
// itself, until no record is left to claim.
func (b *bench) streamCaller(ctx context.Context, h *latencyHistogram) {
	if err := b.runStream(ctx, h); err != nil && ctx.Err() == nil {
		// The client gave up on the cluster (no answer within --timeout,
		// leader changes included) or the cluster refused the value for
		// good: every record left, the same value, would fail alike. Count
		// them failed and end the run.
		if _, n := b.claim(b.settings.records); n > 0 {
			b.fail(n, err)
		}
	}
}

// remaining reports whether records are left to claim.
func (b *bench) remaining() bool {
	return b.claimed.Load() < int64(b.settings.records)
}

// runStream sends records on one loadbalance.ProduceStream, at most
// settings.batch in flight, and times each from Send to its answer. The
// stream fails over to a new leader and resends what was not acknowledged
// (once: it is an idempotent producer), so it ends early only when the
// client gave up on the cluster (no answer within --timeout) or the cluster
// refused a record for good; runStream then returns why, after counting the
// records in flight as failed.
func (b *bench) runStream(ctx context.Context, h *latencyHistogram) error {
	stream, err := b.client.ProduceStream(ctx, loadbalance.WithTopic(b.settings.topic))
	if err != nil {
		return err
	}
	defer stream.Close()
	// inFlight holds the send time of each record not yet answered; its
	// capacity is the window. Answers come back in order.
	inFlight := make(chan time.Time, b.settings.batch)
	broken := make(chan struct{}) // closed by the receiver when Recv fails
	var streamErr error           // why Recv failed; read after wg.Wait
	var wg sync.WaitGroup
	wg.Go(func() {
		for sentAt := range inFlight {
			if streamErr != nil {
				b.fail(1, errStreamBroken)
				continue
			}
			if _, err := stream.Recv(); err != nil {
				streamErr = err
				close(broken)
				b.fail(1, err)
				continue
			}
			h.record(time.Since(sentAt))
			b.done.Add(1)
		}
	})

send:
	for {
		select {
		case <-broken:
			break send
		default:
		}
		if _, n := b.claim(1); n == 0 {
			break
		}
		select {
		case inFlight <- time.Now():
		case <-broken:
			b.fail(1, errStreamBroken)
			break send
		}
		if err := stream.Send(b.value); err != nil {
			// The stream ended: the receiver's Recv reports why and counts
			// this record.
			break
		}
	}
	_ = stream.CloseSend()
	close(inFlight)
	wg.Wait()
	return streamErr
}

// errStreamBroken counts the records in flight on a stream that broke.
var errStreamBroken = errors.New("produce stream broke with the record in flight")

// writeReport prints the result as text or JSON.
func writeReport(w io.Writer, bs benchSettings, r benchResult) error {
	if bs.json {
		return r.writeJSON(w)
	}
	return r.writeText(w, bs)
}
