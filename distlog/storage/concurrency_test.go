package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
)

// Many goroutines append and read at once (run with -race). Every append
// is readable as soon as it returns; readers see only whole, correct
// records; each writer's records are in the log in its order.
func TestLogConcurrentAppendRead(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) {
		c.Segment.MaxStoreBytes = 8 << 10
		c.Segment.MaxIndexBytes = 150*entWidth + 1
	})
	const writers, perWriter, readers = 4, 200, 4
	errs := make(chan error, writers+readers)
	done := make(chan struct{})
	var writing, reading sync.WaitGroup
	for w := range writers {
		writing.Go(func() {
			for seq := range perWriter {
				value := fmt.Appendf(nil, "w%d-%d", w, seq)
				var off uint64
				var err error
				if seq%10 == 9 { // some batches among the single appends
					off, err = l.AppendBatch([]*Record{{Value: value}})
				} else {
					off, err = l.Append(&Record{Value: value})
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d: Append: %w", w, err)
					return
				}
				rec, err := l.Read(off)
				if err != nil || string(rec.Value) != string(value) {
					errs <- fmt.Errorf("writer %d: Read(%d) right after Append = %v, %v; want %q", w, off, rec, err, value)
					return
				}
			}
		})
	}
	for r := range readers {
		reading.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for reads := 0; ; reads++ {
				select {
				case <-done:
					return
				default:
				}
				next := l.NextOffset()
				if next == 0 {
					continue
				}
				off := rng.Uint64N(next)
				rec, err := l.Read(off)
				var w, seq int
				if err == nil {
					_, err = fmt.Sscanf(string(rec.Value), "w%d-%d", &w, &seq)
				}
				if err != nil || rec.Offset != off {
					errs <- fmt.Errorf("reader %d: Read(%d) = %v, %v", r, off, rec, err)
					return
				}
			}
		})
	}
	writing.Wait()
	close(done)
	reading.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	require.Equal(t, uint64(writers*perWriter), l.NextOffset())
	nextSeq := make([]int, writers)
	for off := range l.NextOffset() {
		rec, err := l.Read(off)
		require.NoError(t, err)
		var w, seq int
		_, err = fmt.Sscanf(string(rec.Value), "w%d-%d", &w, &seq)
		require.NoError(t, err)
		require.Equal(t, nextSeq[w], seq, "writer %d's records out of order at offset %d", w, off)
		nextSeq[w]++
	}
}

// Reads, appends and front truncation at once: a read fails only with
// out-of-range, and only for an offset that truncation removed.
func TestLogConcurrentTruncate(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) { c.Segment.MaxIndexBytes = 20 * entWidth })
	appendStorageRecords(t, l, 100)
	errs := make(chan error, 3)
	done := make(chan struct{})
	var wg sync.WaitGroup
	appendDone := make(chan struct{})
	wg.Go(func() { // appender
		defer close(appendDone)
		for range 400 {
			next := l.NextOffset()
			if _, err := l.Append(&Record{Value: storageValue(next)}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() { // truncator: keeps about the last 100 records
		for {
			select {
			case <-done:
				return
			default:
			}
			if next := l.NextOffset(); next > 100 {
				if err := l.Truncate(next - 100); err != nil {
					errs <- err
					return
				}
			}
		}
	})
	wg.Go(func() { // reader
		rng := rand.New(rand.NewPCG(7, 7))
		for {
			select {
			case <-done:
				return
			default:
			}
			lowest, err := l.LowestOffset()
			if err != nil {
				errs <- err
				return
			}
			next := l.NextOffset()
			if next == lowest { // everything but an empty active segment truncated
				continue
			}
			off := lowest + rng.Uint64N(next-lowest)
			rec, err := l.Read(off)
			if err != nil {
				nowLowest, _ := l.LowestOffset()
				var oor api.ErrOffsetOutOfRange
				if errors.As(err, &oor) && off < nowLowest {
					continue
				}
				errs <- fmt.Errorf("Read(%d) = %w (lowest now %d)", off, err, nowLowest)
				return
			}
			if string(rec.Value) != string(storageValue(off)) {
				errs <- fmt.Errorf("Read(%d) = %q, want %q", off, rec.Value, storageValue(off))
				return
			}
		}
	})
	<-appendDone // the appender ends by itself; then stop the others
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	lowest, err := l.LowestOffset()
	require.NoError(t, err)
	requireStorageRecords(t, l, lowest, 500)
}

// Group commit: appenders that wait on the disk together share one fsync.
// The test holds the sync lock while they write, so that all of them are
// waiting when it lets go: then exactly one fsync serves them all.
func TestLogGroupCommit(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) { c.SyncOnAppend = true })
	const appenders = 8
	l.syncMu.Lock()
	errs := make(chan error, appenders)
	for k := range appenders {
		go func() {
			_, err := l.Append(&Record{Value: fmt.Appendf(nil, "a%d", k)})
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return l.writeSeq.Load() == appenders },
		5*time.Second, time.Millisecond, "appenders did not all write")
	before := l.fsyncs.Load()
	l.syncMu.Unlock()
	for range appenders {
		require.NoError(t, <-errs)
	}
	require.Equal(t, uint64(1), l.fsyncs.Load()-before, "fsyncs for %d waiting appenders", appenders)
	require.Equal(t, uint64(appenders), l.NextOffset())
}

// With SyncOnAppend each Append fsyncs before it returns; without it, none.
func TestLogSyncOnAppend(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprint(sync), func(t *testing.T) {
			l := openStorageLog(t, t.TempDir(), func(c *Config) { c.SyncOnAppend = sync })
			appendStorageRecords(t, l, 3)
			_, err := l.AppendBatch([]*Record{{}, {}, {}})
			require.NoError(t, err)
			want := uint64(0)
			if sync {
				want = 4
			}
			require.Equal(t, want, l.fsyncs.Load())
			require.NoError(t, l.Sync())
		})
	}
}

// A roll fsyncs the segment it seals before it creates the next one, with
// or without SyncOnAppend: a sealed segment is whole on disk before any
// later record is written (recovery relies on it to tell corruption from a
// crash). Segments removed later are not synced again.
func TestLogRollSyncsTheSealedSegment(t *testing.T) {
	for _, syncOnAppend := range []bool{false, true} {
		t.Run(fmt.Sprint("SyncOnAppend=", syncOnAppend), func(t *testing.T) {
			l := openStorageLog(t, t.TempDir(), func(c *Config) {
				fiveRecordSegments(c)
				c.SyncOnAppend = syncOnAppend
			})
			batch := make([]*Record, 12) // crosses two segment boundaries
			for k := range batch {
				batch[k] = &Record{Value: storageValue(uint64(k))}
			}
			_, err := l.AppendBatch(batch)
			require.NoError(t, err)
			require.Equal(t, uint64(2), l.rollSyncs.Load(), "fsyncs of sealed segments")
			for _, s := range l.segments[:2] {
				require.Equal(t, s.store.Size(), s.store.flushed.Load(), "segment %d flushed", s.baseOffset)
			}
			require.NoError(t, l.Truncate(5))
			require.NoError(t, l.Sync())
			requireStorageRecords(t, l, 5, 12)
		})
	}
}
