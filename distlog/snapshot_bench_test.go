package distlog

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/proglog/proglog/distlog/storage"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// BenchmarkSnapshot measures one Raft snapshot of a node's state as Raft
// takes it: fsm.Snapshot on the FSM goroutine, Persist into the
// SnapshotStore, and the sink's Close (which makes it durable and reaps the
// previous one), with the state holding 1M and 10M records of 16 bytes in
// the default topic (default segments: 16384 records each). It reports the
// bytes the process wrote per snapshot (written-B/op, from /proc/self/io
// wchar) beside the time: both stay flat as the log grows, because the
// segments are hard-linked, not copied. "stream" reads the snapshot's
// stream, what a follower's InstallSnapshot costs the leader: that one is
// O(records), and only happens for a follower that fell behind a
// compaction.
//
//	go test -run '^$' -bench BenchmarkSnapshot -benchtime 20x -timeout 30m ./distlog
//
// It is not run by go test without -bench; filling 10M records takes a
// while and ~600 MB of disk.
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			f, store := newBenchState(b, n)
			b.Run("linked", func(b *testing.B) {
				var written uint64
				b.ResetTimer()
				for i := range b.N {
					// One append between snapshots, as Raft takes them after
					// new entries.
					b.StopTimer()
					index := uint64(n/1000) + 10 + uint64(i)
					f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand,
						Data: encodeAppend(DefaultTopic, 1, [][]byte{[]byte("between snapshots")})})
					before := processWritten(b)
					b.StartTimer()
					takeSnapshot(b, f, store, index)
					b.StopTimer()
					written += processWritten(b) - before
					b.StartTimer()
				}
				b.ReportMetric(float64(written)/float64(b.N), "written-B/op")
			})
			b.Run("stream", func(b *testing.B) {
				metas, err := store.List()
				require.NoError(b, err)
				require.NotEmpty(b, metas)
				for range b.N {
					meta, rc, err := store.Open(metas[0].ID)
					require.NoError(b, err)
					n, err := io.Copy(io.Discard, rc)
					require.NoError(b, err)
					require.NoError(b, rc.Close())
					require.Equal(b, meta.Size, n)
					b.SetBytes(n)
				}
			})
		})
	}
}

// newBenchState fills a state machine with n records of 16 bytes in the
// default topic, in entries of 1000 records, and opens a SnapshotStore
// beside it.
func newBenchState(b *testing.B, n int) (*fsm, *SnapshotStore) {
	b.Helper()
	f, store := newBenchFSM(b)
	start := time.Now()
	values := make([][]byte, 1000)
	for k := range values {
		values[k] = bytes.Repeat([]byte{'v'}, 16)
	}
	for e := range n / len(values) {
		res := f.Apply(&raft.Log{Index: uint64(e) + 2, Term: 1, Type: raft.LogCommand,
			Data: encodeAppend(DefaultTopic, 1, values)}).(applyResult)
		require.NoError(b, res.err)
	}
	info := f.topicInfos()[0]
	b.Logf("filled %d records (%d segments, %d MB) in %v", info.Records, info.Segments, info.Bytes>>20, time.Since(start))
	return f, store
}

// takeSnapshot takes a snapshot at index as Raft does (Snapshot, Persist
// into store, Close, Release) and returns how long fsm.Snapshot took.
func takeSnapshot(b *testing.B, f *fsm, store *SnapshotStore, index uint64) time.Duration {
	b.Helper()
	start := time.Now()
	snap, err := f.Snapshot()
	onFSM := time.Since(start)
	require.NoError(b, err)
	sink, err := store.Create(1, index, 1, raft.Configuration{}, 1, nil)
	require.NoError(b, err)
	require.NoError(b, snap.Persist(sink))
	require.NoError(b, sink.Close())
	snap.Release()
	return onFSM
}

// newBenchFSM opens an empty state machine with default storage and a
// SnapshotStore beside it.
func newBenchFSM(b *testing.B) (*fsm, *SnapshotStore) {
	b.Helper()
	dir := b.TempDir()
	store, err := NewSnapshotStore(filepath.Join(dir, "snapshots"), 2, zap.NewNop())
	require.NoError(b, err)
	c, err := storage.Config{}.WithDefaults()
	require.NoError(b, err)
	f, err := newFSM(dir, c, store, zap.NewNop())
	require.NoError(b, err)
	b.Cleanup(func() { _ = f.Close() })
	return f, store
}

// processWritten is the bytes this process has passed to write calls
// (wchar in /proc/self/io).
func processWritten(b *testing.B) uint64 {
	b.Helper()
	file, err := os.Open("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		if v, ok := strings.CutPrefix(scanner.Text(), "wchar: "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			require.NoError(b, err)
			return n
		}
	}
	b.Skip("no wchar in /proc/self/io")
	return 0
}

// BenchmarkSnapshotTopics measures one snapshot (as BenchmarkSnapshot's
// "linked") of a state machine with many topics of one record each, of
// which only one took an append since the last snapshot: what a node with
// many mostly idle topics pays each SnapshotInterval under a write load;
// fsm-µs/op is the part on the FSM goroutine, while appends wait.
//
//	go test -run '^$' -bench BenchmarkSnapshotTopics -benchtime 20x ./distlog
func BenchmarkSnapshotTopics(b *testing.B) {
	for _, topics := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) {
			f, store := newBenchFSM(b)
			index := uint64(1)
			apply := func(data []byte) {
				index++
				res := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(applyResult)
				require.NoError(b, res.err)
			}
			for k := range topics - 1 {
				name := fmt.Sprintf("topic-%d", k)
				apply(encodeCreateTopic(name, TopicConfig{}))
				apply(encodeAppend(name, 1, [][]byte{[]byte("one")}))
			}
			var onFSM time.Duration // what appends wait for: fsm.Snapshot alone
			snapshot := func() { onFSM += takeSnapshot(b, f, store, index) }
			snapshot() // the idle topics' records are synced once
			onFSM = 0
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				apply(encodeAppend(DefaultTopic, 1, [][]byte{[]byte("between snapshots")}))
				b.StartTimer()
				snapshot()
			}
			b.ReportMetric(float64(onFSM.Microseconds())/float64(b.N), "fsm-µs/op")
		})
	}
}
