package storage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// backgroundSealing makes segments of five records sealed in the
// background.
func backgroundSealing(c *Config) {
	fiveRecordSegments(c)
	c.SyncSealedInBackground = true
}

// pendingBases lists the bases of the segments whose files in dir have
// pending names (spares, which have no base yet, aside).
func pendingBases(t *testing.T, dir string) []uint64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var bases []uint64
	for _, e := range entries {
		if !isPendingFileName(e.Name()) || strings.HasPrefix(e.Name(), "spare-") {
			continue
		}
		base, ok := parseSegmentFileName(strings.TrimSuffix(e.Name(), pendingSuffix))
		require.True(t, ok, e.Name())
		if !slices.Contains(bases, base) {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	return bases
}

// appendRecords appends the records n.. n+k-1 (storageValue values) as one
// batch.
func appendRecords(t *testing.T, l *Log, n, k uint64) {
	t.Helper()
	batch := make([]*Record, k)
	for i := range batch {
		batch[i] = &Record{Value: storageValue(n + uint64(i))}
	}
	first, err := l.AppendBatch(batch)
	require.NoError(t, err)
	require.Equal(t, n, first)
}

// A roll with background sealing waits for no fsync: while the sealed
// segment's fsync is held, the append that rolled returns, its records
// read back, and the new segments keep pending names. Sync makes them
// durable and named; the log reopens whole.
func TestBackgroundSealingRollDoesNotWait(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, backgroundSealing)
	entered, release := holdSealing(t, l, 16)

	appended := make(chan struct{})
	go func() {
		defer close(appended)
		appendRecords(t, l, 0, 12) // rolls twice: segments 0, 5, 10
	}()
	receive(t, appended, "AppendBatch across two rolls")
	require.Equal(t, uint64(0), receive(t, entered, "background fsync of segment 0"))
	requireStorageRecords(t, l, 0, 12)
	requireReadBatchAll(t, l, 0, 12)
	require.Equal(t, []uint64{5, 10}, pendingBases(t, dir))
	require.Zero(t, l.rollSyncs.Load(), "fsyncs on the appender's goroutine")

	synced := make(chan error, 1)
	go func() { synced <- l.Sync() }()
	release()
	require.NoError(t, receive(t, synced, "Sync"))
	require.Empty(t, pendingBases(t, dir), "pending segments after Sync")
	require.Equal(t, uint64(2), l.sealSyncs.Load(), "sealed segments fsynced")
	require.Equal(t, []uint64{0, 5, 10}, segmentFilesPresent(t, dir, 0, 5, 10))

	require.NoError(t, l.Close())
	l = openStorageLog(t, dir, backgroundSealing)
	requireStorageRecords(t, l, 0, 12)
}

// A snapshot relies on the sealed segments it links being durable once
// Capture.Sync returns: with the background goroutine stopped, nothing
// but Capture.Sync makes them so, and it does (and it leaves segments
// made after the capture to the goroutine, so that it ends however fast
// the log rolls).
func TestBackgroundSealingCaptureSyncMakesSealedSegmentsDurable(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, backgroundSealing)
	l.sealer.halt() // only the callers that need durability drain

	appendRecords(t, l, 0, 12)
	require.Zero(t, l.sealSyncs.Load())
	require.Equal(t, []uint64{5, 10}, pendingBases(t, dir))

	sealedDir, activeDir := t.TempDir(), t.TempDir()
	c, err := l.LinkSegments(sealedDir, activeDir, "")
	require.NoError(t, err)
	require.Len(t, c.Segments, 3)
	require.Zero(t, l.sealSyncs.Load(), "a capture waits for no fsync")

	appendRecords(t, l, 12, 5) // after the capture: 10 sealed, 15 pending

	require.NoError(t, c.Sync())
	require.Equal(t, uint64(3), l.sealSyncs.Load(), "sealed segments fsynced: 0 and 5, and 10 (sealed since)")
	require.Equal(t, []uint64{15}, pendingBases(t, dir), "pending segments after Capture.Sync: only one the capture does not hold")
	for _, s := range c.Segments[:2] {
		_, err := os.Stat(filepath.Join(sealedDir, StoreFileName(s.Base)))
		require.NoError(t, err, "captured sealed segment %d", s.Base)
	}
}

// Log.Sync too (the state machine records its progress after it).
func TestBackgroundSealingSyncMakesSealedSegmentsDurable(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, backgroundSealing)
	l.sealer.halt()
	appendRecords(t, l, 0, 17)
	require.Zero(t, l.sealSyncs.Load())
	require.NoError(t, l.Sync())
	require.Equal(t, uint64(3), l.sealSyncs.Load())
	require.Empty(t, pendingBases(t, dir))
}

// Truncate leaves a sealed segment that is not durable yet, and the
// segments after it, until it is.
func TestBackgroundSealingTruncateKeepsUnsyncedSegments(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, backgroundSealing)
	l.sealer.halt()
	appendRecords(t, l, 0, 17) // 0 unsynced, 5, 10, 15 pending
	require.NoError(t, l.Truncate(15))
	requireStorageRecords(t, l, 0, 17)
	require.NoError(t, l.Sync())
	require.NoError(t, l.Truncate(15))
	requireStorageRecords(t, l, 15, 17)
	require.Equal(t, []uint64{15}, segmentFilesPresent(t, dir, 0, 5, 10, 15))
}

// What a power failure can leave, and how the log reopens: a sealed
// segment whose end never reached the disk, followed by segments under
// pending names. The pending ones are dropped and the torn segment is cut
// like an active one: a valid prefix, no corruption. (Had the next segment
// its real name, the torn one would be a damaged sealed segment.)
func TestBackgroundSealingCrashBeforeTheSealedSegmentIsDurable(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, backgroundSealing)
	l.sealer.halt()
	appendRecords(t, l, 0, 12)
	l.appendMu.Lock()
	require.NoError(t, l.active.store.Flush())
	l.appendMu.Unlock()

	// Copy the files as they are (the page cache) and tear segment 0.
	crashed := copyLogFiles(t, dir)
	store := filepath.Join(crashed, segmentFileName(0, storeExt))
	fi, err := os.Stat(store)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(store, fi.Size()-3))

	recovered := openStorageLog(t, crashed, backgroundSealing)
	requireStorageRecords(t, recovered, 0, 4) // the last frame of segment 0 was torn
	require.Empty(t, pendingBases(t, crashed))
	appendRecords(t, recovered, 4, 8)
	requireStorageRecords(t, recovered, 0, 12)
}

// copyLogFiles copies the files of the log in dir (as they are: what the
// page cache holds) to a new directory, as a crash would leave them.
func copyLogFiles(t *testing.T, dir string) string {
	t.Helper()
	crashed := t.TempDir()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if e.Name() == lockFileName {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(crashed, e.Name()), data, 0o644))
	}
	return crashed
}

// Segments dropped at open (pending names) change the epoch: a link made
// by LinkSegments to one of them names other bytes than the log will hold
// at that base.
func TestBackgroundSealingDroppedSegmentsChangeTheEpoch(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, backgroundSealing)
	l.sealer.halt()
	appendRecords(t, l, 0, 12)
	require.NoError(t, l.Sync()) // 0, 5, 10 durable and named
	appendRecords(t, l, 12, 5)   // 15 pending
	l.appendMu.Lock()
	require.NoError(t, l.active.store.Flush())
	l.appendMu.Unlock()
	epoch := l.Epoch()
	crashed := copyLogFiles(t, dir)

	recovered := openStorageLog(t, crashed, backgroundSealing)
	requireStorageRecords(t, recovered, 0, 15)
	require.Greater(t, recovered.Epoch(), epoch)
}

func TestBackgroundSealingConfig(t *testing.T) {
	for _, configure := range []func(*Config){
		func(c *Config) { c.SyncOnAppend = true },
		func(c *Config) { c.Segment.Preallocate = true },
	} {
		c := Config{SyncSealedInBackground: true}
		configure(&c)
		_, err := NewLog(t.TempDir(), c)
		require.ErrorIs(t, err, ErrInvalidConfig)
	}
}

// The goroutine makes the next segment's files ahead, and a roll takes
// them: it creates no file.
func TestBackgroundSealingRollTakesTheSpare(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, backgroundSealing)
	appendRecords(t, l, 0, 6) // a roll: the goroutine then makes a spare
	hasSpare := func() bool {
		l.sealer.mu.Lock()
		defer l.sealer.mu.Unlock()
		return l.sealer.spare != nil
	}
	require.Eventually(t, hasSpare, removalWait, time.Millisecond, "a spare made ahead")
	spare := l.sealer.takeSpare()
	spareStore := spare.store.filePath()
	l.sealer.mu.Lock()
	l.sealer.spare = spare
	l.sealer.mu.Unlock()

	appendRecords(t, l, 6, 5) // rolls at 10
	l.mu.RLock()
	active := l.active
	l.mu.RUnlock()
	require.Equal(t, uint64(10), active.baseOffset)
	require.NoError(t, l.Sync())
	_, err := os.Stat(spareStore)
	require.ErrorIs(t, err, os.ErrNotExist, "the spare's store was renamed")
	require.Equal(t, filepath.Join(dir, StoreFileName(10)), active.store.filePath())
	require.NoError(t, l.Close())
	require.Empty(t, pendingBases(t, dir))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, isPendingFileName(e.Name()), "%s left after Close", e.Name())
	}
	l = openStorageLog(t, dir, backgroundSealing)
	requireStorageRecords(t, l, 0, 11)
}

// A segment made from a spare keeps the spare's name until it is renamed:
// dropped at open, it changes the epoch as any dropped segment does.
func TestBackgroundSealingDroppedSpareChangesTheEpoch(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, backgroundSealing)
	appendRecords(t, l, 0, 6) // a roll: the goroutine then makes a spare
	require.Eventually(t, func() bool {
		l.sealer.mu.Lock()
		defer l.sealer.mu.Unlock()
		return l.sealer.spare != nil && !l.sealer.running
	}, removalWait, time.Millisecond, "a spare made ahead")
	require.NoError(t, l.Sync())
	epoch := l.Epoch()

	entered, release := holdSealing(t, l, 4)
	appendRecords(t, l, 6, 5) // rolls at 10, into the spare
	require.Equal(t, uint64(5), receive(t, entered, "background fsync of segment 5"))
	l.mu.RLock()
	active := l.active
	l.mu.RUnlock()
	require.True(t, strings.HasPrefix(filepath.Base(active.store.filePath()), spareNamePrefix), active.store.filePath())
	l.appendMu.Lock()
	require.NoError(t, active.store.Flush())
	l.appendMu.Unlock()
	crashed := copyLogFiles(t, dir)
	release()

	recovered := openStorageLog(t, crashed, backgroundSealing)
	requireStorageRecords(t, recovered, 0, 10)
	require.Greater(t, recovered.Epoch(), epoch)
}

// With background sealing the goroutine, not the roll, releases the
// indexes of the older sealed segments.
func TestBackgroundSealingReleasesIndexes(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) {
		backgroundSealing(c)
		c.MappedSealedIndexes = 1
	})
	appendRecords(t, l, 0, 17) // segments 0, 5, 10, 15
	require.Eventually(t, func() bool {
		l.sealer.mu.Lock()
		defer l.sealer.mu.Unlock()
		return !l.sealer.running
	}, removalWait, time.Millisecond, "the goroutine ends")
	requireSealedReleased(t, l, 1)
	requireStorageRecords(t, l, 0, 17)
	requireReadBatchAll(t, l, 0, 17)
}

// holdSealing makes l's background sealing stop before each segment's
// fsync until release is called (at the end of the test at the latest),
// telling entered (buffer n) the segment's base each time.
func holdSealing(t *testing.T, l *Log, n int) (entered <-chan uint64, release func()) {
	t.Helper()
	ch := make(chan uint64, n)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	l.sealHook = func(base uint64) {
		ch <- base
		<-gate
	}
	return ch, release
}
