package storage

import (
	"bytes"
	"encoding/binary"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return b
}

func TestSnapshotRoundTrip(t *testing.T) {
	src := openStorageLog(t, t.TempDir(), smallSegments)
	appendStorageRecords(t, src, 40)
	_, err := src.Append(&Record{Value: storageValue(40), Term: 7, BatchPos: 3})
	require.NoError(t, err)
	require.NoError(t, src.Truncate(12))
	lowest, err := src.LowestOffset()
	require.NoError(t, err)
	require.Positive(t, lowest)

	dstDir := t.TempDir()
	dst := openStorageLog(t, dstDir, func(c *Config) { c.Segment.MaxIndexBytes = 7 * entWidth })
	appendStorageRecords(t, dst, 100) // replaced by Restore
	require.NoError(t, dst.Restore(src.Reader()))
	requireStorageRecords(t, dst, lowest, 41)
	rec, err := dst.Read(40)
	require.NoError(t, err)
	require.Equal(t, uint64(7), rec.Term)
	require.Equal(t, uint32(3), rec.BatchPos)

	// Durable and reopenable, and appends continue after it.
	require.NoError(t, dst.Close())
	dst = openStorageLog(t, dstDir, nil)
	requireStorageRecords(t, dst, lowest, 41)
	appendStorageRecords(t, dst, 2)
	requireStorageRecords(t, dst, lowest, 43)
}

func TestSnapshotEmptyLog(t *testing.T) {
	src := openStorageLog(t, t.TempDir(), nil)
	require.NoError(t, src.ResetTo(100))
	dst := openStorageLog(t, t.TempDir(), nil)
	appendStorageRecords(t, dst, 3)
	require.NoError(t, dst.Restore(src.Reader()))
	requireStorageRecords(t, dst, 100, 100)
}

// Reader is point-in-time: appends, front truncation and even a reset after
// the call do not change what it yields.
func TestSnapshotPointInTime(t *testing.T) {
	src := openStorageLog(t, t.TempDir(), fiveRecordSegments)
	appendStorageRecords(t, src, 30)
	r := src.Reader()
	appendStorageRecords(t, src, 20)
	require.NoError(t, src.Truncate(25))
	snapshot := readAll(t, r)
	require.NoError(t, src.Reset())

	dst := openStorageLog(t, t.TempDir(), nil)
	require.NoError(t, dst.Restore(bytes.NewReader(snapshot)))
	requireStorageRecords(t, dst, 0, 30)
}

// While appends continue, Reader yields exactly the records present at the
// call: a prefix between NextOffset before and after the call.
func TestSnapshotWhileAppending(t *testing.T) {
	src := openStorageLog(t, t.TempDir(), smallSegments)
	appendStorageRecords(t, src, 50)
	stop := make(chan struct{})
	appendErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				appendErr <- nil
				return
			default:
			}
			next := src.NextOffset()
			if _, err := src.Append(&Record{Value: storageValue(next)}); err != nil {
				appendErr <- err
				return
			}
		}
	})
	for range 5 {
		before := src.NextOffset()
		r := src.Reader()
		after := src.NextOffset()
		dst := openStorageLog(t, t.TempDir(), nil)
		require.NoError(t, dst.Restore(r))
		got := dst.NextOffset()
		require.GreaterOrEqual(t, got, before)
		require.LessOrEqual(t, got, after)
		requireStorageRecords(t, dst, 0, got)
	}
	close(stop)
	wg.Wait()
	require.NoError(t, <-appendErr)
}

func TestSnapshotInvalidatedByTruncateFrom(t *testing.T) {
	src := openStorageLog(t, t.TempDir(), fiveRecordSegments)
	appendStorageRecords(t, src, 12)
	r := src.Reader()
	buf := make([]byte, snapshotHeaderWidth+5)
	_, err := io.ReadFull(r, buf)
	require.NoError(t, err)
	require.NoError(t, src.TruncateFrom(7))
	_, err = io.ReadAll(r)
	require.ErrorIs(t, err, ErrReaderInvalidated)
}

func TestSnapshotReaderClose(t *testing.T) {
	src := openStorageLog(t, t.TempDir(), fiveRecordSegments)
	appendStorageRecords(t, src, 12)
	r := src.Reader()
	closer, ok := r.(io.Closer)
	require.True(t, ok, "Reader's stream implements io.Closer")
	require.NoError(t, closer.Close())
	require.NoError(t, closer.Close())
	_, err := r.Read(make([]byte, 10))
	require.Error(t, err)
}

func TestSnapshotRestoreRejects(t *testing.T) {
	src := openStorageLog(t, t.TempDir(), fiveRecordSegments)
	appendStorageRecords(t, src, 12)
	good := readAll(t, src.Reader())
	frame0 := snapshotHeaderWidth
	frame1 := frame0 + frameHeaderWidth + int(binary.BigEndian.Uint32(good[frame0:]))
	tests := []struct {
		name   string
		stream func() []byte
	}{
		{"empty", func() []byte { return nil }},
		{"bad magic", func() []byte { b := bytes.Clone(good); b[0] ^= 1; return b }},
		{"bad header checksum", func() []byte { b := bytes.Clone(good); b[12] ^= 1; return b }},
		{"next below lowest", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint64(b[8:], 20)
			binary.BigEndian.PutUint32(b[24:], frameChecksum(b[:24], nil))
			return b
		}},
		{"flipped record byte", func() []byte { b := bytes.Clone(good); b[frame1+frameHeaderWidth+3] ^= 1; return b }},
		{"cut inside a frame", func() []byte { return good[:len(good)-3] }},
		{"cut between frames", func() []byte { return good[:frame1] }},
		{"a frame missing", func() []byte { return append(bytes.Clone(good[:frame0]), good[frame1:]...) }},
		{"a huge length", func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[frame0:], 1<<31)
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := openStorageLog(t, t.TempDir(), nil)
			require.ErrorIs(t, dst.Restore(bytes.NewReader(tt.stream())), ErrBadSnapshot)
			// The log stays usable.
			next := dst.NextOffset()
			off, err := dst.Append(&Record{Value: []byte("x")})
			require.NoError(t, err)
			require.Equal(t, next, off)
		})
	}
}
