package storage

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/proglog/proglog/distlog/internal/latency"
)

// Storage benchmarks: `make bench` (see README.md, "Storage benchmarks").
// Every benchmark reports record-value bytes per second (b.SetBytes), on
// default segments (1 MiB stores).

func benchLog(b *testing.B, syncOnAppend bool) *Log {
	b.Helper()
	l, err := NewLog(b.TempDir(), Config{SyncOnAppend: syncOnAppend})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Close(); err != nil {
			b.Error(err)
		}
	})
	return l
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, size := range []int{100, 1 << 10, 16 << 10} {
			b.Run(fmt.Sprintf("sync=%t/size=%s", sync, sizeName(size)), func(b *testing.B) {
				l := benchLog(b, sync)
				rec := &Record{Value: make([]byte, size)}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := l.Append(rec); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkAppendBatch: one op is a batch of 64 records (group commit: one
// write, at most one fsync).
func BenchmarkAppendBatch(b *testing.B) {
	const batchLen = 64
	for _, sync := range []bool{false, true} {
		for _, size := range []int{100, 1 << 10} {
			b.Run(fmt.Sprintf("sync=%t/size=%s/batch=%d", sync, sizeName(size), batchLen), func(b *testing.B) {
				l := benchLog(b, sync)
				batch := make([]*Record, batchLen)
				for k := range batch {
					batch[k] = &Record{Value: make([]byte, size)}
				}
				b.SetBytes(int64(size * batchLen))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := l.AppendBatch(batch); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkAppendParallel: concurrent Appends with SyncOnAppend share
// fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	const size = 1 << 10
	b.Run(fmt.Sprintf("sync=true/size=%s", sizeName(size)), func(b *testing.B) {
		l := benchLog(b, true)
		b.SetBytes(size)
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			rec := &Record{Value: make([]byte, size)}
			for pb.Next() {
				if _, err := l.Append(rec); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkRead reads a log of 8 MiB of 1 KiB records, in order and at
// random; the parallel case runs readers concurrently.
func BenchmarkRead(b *testing.B) {
	const size, records = 1 << 10, 8 << 10
	l := benchLog(b, false)
	batch := make([]*Record, 256)
	for k := range batch {
		batch[k] = &Record{Value: make([]byte, size)}
	}
	for range records / len(batch) {
		if _, err := l.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	read := func(b *testing.B, off uint64) {
		if _, err := l.Read(off); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("sequential/size=1KiB", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		off := uint64(0)
		for b.Loop() {
			read(b, off)
			off = (off + 1) % records
		}
	})
	b.Run("random/size=1KiB", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			read(b, rng.Uint64N(records))
		}
	})
	b.Run("random-parallel/size=1KiB", func(b *testing.B) {
		b.SetBytes(size)
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
			for pb.Next() {
				if _, err := l.Read(rng.Uint64N(records)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkReadSequential reads a log of 16 MiB of records front to back,
// one Read per record against ReadBatch in batches of up to 1000 records or
// 1 MiB (what a batched ConsumeStream asks for). One op is one record
// either way, so ns/op and MB/s compare directly.
func BenchmarkReadSequential(b *testing.B) {
	for _, size := range []int{100, 1 << 10} {
		records := (16 << 20) / size
		l := benchLog(b, false)
		batch := make([]*Record, 256)
		for k := range batch {
			batch[k] = &Record{Value: make([]byte, size)}
		}
		for range records / len(batch) {
			if _, err := l.AppendBatch(batch); err != nil {
				b.Fatal(err)
			}
		}
		if err := l.Sync(); err != nil {
			b.Fatal(err)
		}
		next := l.NextOffset()
		b.Run(fmt.Sprintf("Read/size=%s", sizeName(size)), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			off := uint64(0)
			for b.Loop() {
				if _, err := l.Read(off); err != nil {
					b.Fatal(err)
				}
				off = (off + 1) % next
			}
		})
		b.Run(fmt.Sprintf("ReadBatch/size=%s", sizeName(size)), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			off := uint64(0)
			var batch []Record
			for b.Loop() {
				if len(batch) == 0 {
					var err error
					if batch, err = l.ReadBatch(off, 1000, 1<<20); err != nil {
						b.Fatal(err)
					}
					off = (off + uint64(len(batch))) % next
				}
				batch = batch[1:]
			}
		})
	}
}

// BenchmarkReadSealed reads records of sealed segments at random, with
// their indexes mapped (MappedSealedIndexes past the segment count) and
// released (none mapped: one pread of the index entries per Read), in the
// same binary: the cost of releasing old segments' index maps.
func BenchmarkReadSealed(b *testing.B) {
	const size, records = 100, 160_000 // 16 segments of 1 MiB
	for _, tc := range []struct {
		name   string
		mapped int
	}{{"mapped", 1 << 20}, {"released", -1}} {
		l, err := NewLog(b.TempDir(), Config{MappedSealedIndexes: tc.mapped})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := l.Close(); err != nil {
				b.Error(err)
			}
		})
		batch := make([]*Record, 1000)
		for k := range batch {
			batch[k] = &Record{Value: make([]byte, size)}
		}
		for range records / len(batch) {
			if _, err := l.AppendBatch(batch); err != nil {
				b.Fatal(err)
			}
		}
		segments, err := l.Segments()
		if err != nil {
			b.Fatal(err)
		}
		sealedEnd := segments[len(segments)-1].Base // records below are in sealed segments
		b.Run(fmt.Sprintf("Read/%s/size=%s", tc.name, sizeName(size)), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Read(rng.Uint64N(sealedEnd)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendPreallocated: synced appends (SyncOnAppend) into
// preallocated segments, as the Raft log store makes them: space only
// allocated (fallocate) or written with zeroes ahead of the rolls
// (ZeroFill). One op is a batch of one record, or of 100 (about the
// store write of one Raft entry of 100 records of 100 bytes). Segments
// roll every 1 MiB; with ZeroFill each roll takes the spare file when it
// is ready.
func BenchmarkAppendPreallocated(b *testing.B) {
	const size = 100
	for _, zeroFill := range []bool{false, true} {
		for _, batchLen := range []int{1, 100} {
			b.Run(fmt.Sprintf("zerofill=%t/batch=%d", zeroFill, batchLen), func(b *testing.B) {
				c := Config{SyncOnAppend: true}
				c.Segment.Preallocate = true
				c.Segment.ZeroFill = zeroFill
				l, err := NewLog(b.TempDir(), c)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() {
					if err := l.Close(); err != nil {
						b.Error(err)
					}
				})
				batch := make([]*Record, batchLen)
				for k := range batch {
					batch[k] = &Record{Value: make([]byte, size)}
				}
				b.SetBytes(int64(size * batchLen))
				for b.Loop() {
					if _, err := l.AppendBatch(batch); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkAppendRoll measures what a roll costs the appender of a log
// that does not fsync its appends (a topic's log, appended to on Raft's
// state-machine goroutine), with 1 MiB and 8 MiB segments (the topics'
// default), sealed by the roll (an fsync before the next segment) or in
// the background (Config.SyncSealedInBackground, the topics' setting): one
// op is a batch of 100 records of 100 B, and the ops that sealed a segment
// are reported apart: "roll-mean-µs" and "roll-max-µs", beside
// "other-mean-µs"; "p99.9-µs" is over all ops.
//
//	go test -run '^$' -bench AppendRoll -benchtime 20000x -count 6 ./distlog/storage
func BenchmarkAppendRoll(b *testing.B) {
	const batchLen, size = 100, 100
	for _, background := range []bool{false, true} {
		for _, segment := range []uint64{1 << 20, 8 << 20} {
			name := fmt.Sprintf("background=%t/segment=%s", background, sizeName(int(segment>>10)<<10))
			b.Run(name, func(b *testing.B) {
				var c Config
				c.Segment.MaxStoreBytes = segment
				c.SyncSealedInBackground = background
				l, err := NewLog(b.TempDir(), c)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = l.Close() })
				batch := make([]*Record, batchLen)
				for k := range batch {
					batch[k] = &Record{Value: make([]byte, size)}
				}
				var rolled, other []time.Duration
				b.SetBytes(batchLen * size)
				for b.Loop() {
					before := l.segmentCount()
					start := time.Now()
					if _, err := l.AppendBatch(batch); err != nil {
						b.Fatal(err)
					}
					took := time.Since(start)
					if l.segmentCount() != before {
						rolled = append(rolled, took)
					} else {
						other = append(other, took)
					}
				}
				b.StopTimer()
				b.ReportMetric(latency.Mean(rolled), "roll-mean-µs")
				b.ReportMetric(float64(slices.Max(append(rolled, 0)).Microseconds()), "roll-max-µs")
				b.ReportMetric(latency.Mean(other), "other-mean-µs")
				all := slices.Concat(rolled, other)
				slices.Sort(all)
				b.ReportMetric(latency.Quantile(all, 0.999), "p99.9-µs")
			})
		}
	}
}

// segmentCount is the number of segments, for benchmarks.
func (l *Log) segmentCount() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segments)
}

// BenchmarkAppendWhileTruncating measures what front truncation costs an
// appender of a log that fsyncs every append (as the Raft log store does):
// one op appends a 12 KiB record (SyncOnAppend), while on "truncating" a
// goroutine calls Truncate in a loop (after every append), keeping the
// last 64 records: a 1 MiB segment goes every ~85 appends. It reports the
// latency of the appends in µs: p50, p99, p99.9 and max.
//
//	go test -run '^$' -bench AppendWhileTruncating -benchtime 5000x -count 6 ./distlog/storage
func BenchmarkAppendWhileTruncating(b *testing.B) {
	const size, keep = 12 << 10, 64
	for _, truncating := range []bool{false, true} {
		b.Run(fmt.Sprintf("truncating=%t", truncating), func(b *testing.B) {
			l := benchLog(b, true)
			rec := &Record{Value: make([]byte, size)}
			stop := make(chan struct{})
			truncatorDone := make(chan error, 1)
			go func() {
				var err error
				for truncating && err == nil {
					changed := l.Appended()
					if next := l.NextOffset(); next > keep {
						err = l.Truncate(next - keep)
					}
					select {
					case <-changed:
					case <-stop:
						truncatorDone <- err
						return
					}
				}
				<-stop
				truncatorDone <- err
			}()
			latencies := make([]time.Duration, 0, b.N)
			b.SetBytes(size)
			for b.Loop() {
				start := time.Now()
				if _, err := l.Append(rec); err != nil {
					b.Fatal(err)
				}
				latencies = append(latencies, time.Since(start))
			}
			close(stop)
			if err := <-truncatorDone; err != nil {
				b.Fatal(err)
			}
			latency.Report(b, latencies)
		})
	}
}
