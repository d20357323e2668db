package distlog

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/proglog/proglog/distlog/storage"
	"github.com/stretchr/testify/require"
)

// storeFilesIn returns the store files in dir, oldest segment first.
func storeFilesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var files []string
	for _, e := range entries {
		if _, ok := storage.ParseStoreFileName(e.Name()); ok {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(files)
	return files
}

// flipByte flips a bit of the byte at pos of the file at path.
func flipByte(t *testing.T, path string, pos int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[pos] ^= 0x10
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// A byte flipped in the middle of a sealed segment of the Raft log (a
// failing disk) refuses the store with a storage.CorruptionError naming the
// file, rather than opening it: Raft stops the node when it cannot read an
// entry, and recovery must never cut a sealed segment (it used to drop every
// later segment, entries the cluster had acknowledged).
func TestLogStoreRefusesACorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	s := newTestLogStore(t, dir)
	require.NoError(t, s.StoreLogs(testEntries(1, 14, 1))) // segments 1, 5, 9, 13
	require.NoError(t, s.Close())
	files := storeFilesIn(t, filepath.Join(dir, logStoreSegmentsDirName))
	require.Len(t, files, 4)
	sealed := files[1] // entries 5..8
	fi, err := os.Stat(sealed)
	require.NoError(t, err)
	flipByte(t, sealed, int(fi.Size())/2)
	before, err := os.ReadFile(sealed)
	require.NoError(t, err)

	var c storage.Config
	c.Segment.MaxIndexBytes = 4 * entWidth
	_, err = newLogStore(dir, c)
	require.ErrorIs(t, err, storage.ErrCorrupt)
	var ce *storage.CorruptionError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, sealed, ce.Path)
	require.Equal(t, uint64(5), ce.Segment)
	require.Contains(t, err.Error(), sealed)
	after, err := os.ReadFile(sealed)
	require.NoError(t, err)
	require.Equal(t, before, after, "the refused segment was changed")
	require.Len(t, storeFilesIn(t, filepath.Join(dir, logStoreSegmentsDirName)), 4, "segments removed")
}

// A crash mid-write leaves a torn entry at the end of the active segment,
// which is preallocated (its tail is zeroes, not corruption): recovery cuts
// the torn entry and keeps the rest, and the store takes the entry again.
func TestLogStoreCutsATornLastEntry(t *testing.T) {
	dir := t.TempDir()
	s := newTestLogStore(t, dir)
	require.NoError(t, s.StoreLogs(testEntries(1, 14, 1))) // entries 13 and 14 in the active segment
	// The files as a crash leaves them: not closed, the active segment
	// still at its preallocated size.
	image := t.TempDir()
	require.NoError(t, os.CopyFS(image, os.DirFS(dir)))
	require.NoError(t, os.Remove(filepath.Join(image, logStoreSegmentsDirName, "LOCK")))
	files := storeFilesIn(t, filepath.Join(image, logStoreSegmentsDirName))
	active := files[len(files)-1]
	b, err := os.ReadFile(active)
	require.NoError(t, err)
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	require.Less(t, end, len(b), "the active segment is not preallocated")
	// Entry 14 torn: its last bytes never reached the disk.
	clear(b[end-5 : end])
	require.NoError(t, os.WriteFile(active, b, 0o644))

	r := newTestLogStore(t, image)
	last, err := r.LastIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(13), last)
	requireRange(t, r, 1, 13)
	require.NoError(t, r.StoreLogs(testEntries(14, 15, 2)))
	requireRange(t, r, 1, 15)
}

// A node whose Raft log or topic log is damaged where no crash leaves
// damage does not start: NewDistributedLog fails with ErrCorruptData, one
// line that names the file and says what to do, and leaves the damaged
// files as they are.
func TestDistributedLogRefusesCorruptData(t *testing.T) {
	tests := []struct {
		name string
		// damage damages a sealed segment of node 0 and returns its path.
		damage func(t *testing.T, dir string) string
	}{
		{
			name: "a flipped byte in a sealed segment of the Raft log",
			damage: func(t *testing.T, dir string) string {
				files := storeFilesIn(t, filepath.Join(dir, "raft", "log", logStoreSegmentsDirName))
				require.GreaterOrEqual(t, len(files), 2, "the Raft log has no sealed segment")
				fi, err := os.Stat(files[0])
				require.NoError(t, err)
				flipByte(t, files[0], int(fi.Size())-40)
				return files[0]
			},
		},
		{
			name: "a sealed segment of the default topic cut short",
			damage: func(t *testing.T, dir string) string {
				files := storeFilesIn(t, filepath.Join(dir, topicsDirName, topicDirName(0)))
				require.GreaterOrEqual(t, len(files), 2, "the topic has no sealed segment")
				fi, err := os.Stat(files[0])
				require.NoError(t, err)
				require.NoError(t, os.Truncate(files[0], fi.Size()-3))
				return files[0]
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, 1, func(cfg *DistributedConfig) {
				cfg.Log.Segment.MaxIndexBytes = 8 * entWidth // 8 records or Raft entries a segment
				cfg.Raft.SnapshotThreshold = 1 << 20         // no compaction
			})
			for range 4 {
				c.appendValues("a", "b", "c", "d", "e", "f")
			}
			for range 12 {
				c.appendValues("one")
			}
			c.stop(0)
			path := tt.damage(t, c.nodes[0].dir)
			before, err := os.ReadFile(path)
			require.NoError(t, err)

			err = c.open(0)
			require.ErrorIs(t, err, ErrCorruptData)
			require.ErrorIs(t, err, storage.ErrCorrupt)
			msg := err.Error()
			require.NotContains(t, msg, "\n")
			require.Contains(t, msg, path)
			require.Contains(t, msg, "Remove the data directory "+c.nodes[0].dir)
			require.True(t, strings.Contains(msg, "not bootstrapping"), "%s", msg)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, before, after, "the damaged file was changed")
		})
	}
}

// A linked snapshot reads the sealed segments of the topics through hard
// links to the same files: a byte flipped in one of them (a failing disk,
// after the node opened its logs) makes the snapshot's stream fail, as it
// is read, with a storage.CorruptionError naming the linked file; it is
// never sent short or with the damaged record in it. Both parts are
// checked: the pool's sealed files and the captured active one.
func TestLinkedSnapshotReportsACorruptSegment(t *testing.T) {
	for _, sealed := range []bool{true, false} {
		t.Run(fmt.Sprint("sealed=", sealed), func(t *testing.T) {
			dir := t.TempDir()
			f := newTestFSM(t, dir)
			for i := uint64(1); i <= 20; i++ { // 8 records a segment: 0, 8 sealed, 16 active
				f.Apply(entry(i, fmt.Sprintf("value-%02d", i)))
			}
			snap, err := f.Snapshot()
			require.NoError(t, err)
			defer snap.Release()
			sink, err := f.snapshots.Create(1, 20, 1, raft.Configuration{}, 1, nil)
			require.NoError(t, err)
			require.NoError(t, snap.Persist(sink))
			require.NoError(t, sink.Close())

			files := storeFilesIn(t, filepath.Join(dir, topicsDirName, topicDirName(0)))
			require.Len(t, files, 3)
			damaged := files[1]
			if !sealed {
				damaged = files[2]
			}
			fi, err := os.Stat(damaged)
			require.NoError(t, err)
			flipByte(t, damaged, int(fi.Size())-3) // the value of the segment's last record

			_, rc, err := f.snapshots.Open(sink.ID())
			require.NoError(t, err)
			defer func() { _ = rc.Close() }()
			_, err = io.ReadAll(rc)
			require.ErrorIs(t, err, storage.ErrCorrupt)
			var ce *storage.CorruptionError
			require.ErrorAs(t, err, &ce)
			// The active segment's link is named <topic dir>-<store file>.
			require.True(t, strings.HasSuffix(filepath.Base(ce.Path), storage.StoreFileName(ce.Segment)), "%v", err)
			require.True(t, strings.HasSuffix(filepath.Base(ce.Path), filepath.Base(damaged)), "%v", err)
			require.True(t, strings.HasPrefix(ce.Path, filepath.Join(dir, "snapshots")), "the error names the snapshot's link: %v", err)
		})
	}
}
