package storage

import (
	"os"
	"testing"

	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

func appendToSegment(t *testing.T, s *segment, value []byte) uint64 {
	t.Helper()
	off := s.nextOffset.Load()
	frame := appendFrame(nil, &Record{Value: value}, off)
	require.Equal(t, 1, s.fits(frame, []uint64{0}, 0))
	require.NoError(t, s.appendFrames(frame, []uint64{0}))
	return off
}

func TestSegment(t *testing.T) {
	dir := t.TempDir()
	var c Config
	c.Segment.MaxStoreBytes = 1024
	c.Segment.MaxIndexBytes = 3 * entWidth
	c.Logger = zaptest.NewLogger(t)
	c, err := c.WithDefaults()
	require.NoError(t, err)

	s, err := createSegment(dir, 16, c, nil, false)
	require.NoError(t, err)
	require.Equal(t, uint64(16), s.nextOffset.Load())
	require.False(t, s.IsMaxed())
	for k := range uint64(3) {
		off := appendToSegment(t, s, []byte("hello world"))
		require.Equal(t, 16+k, off)
		rec, err := s.Read(off)
		require.NoError(t, err)
		require.Equal(t, []byte("hello world"), rec.Value)
	}
	require.True(t, s.IsMaxed(), "maxed by the index")
	frame := appendFrame(nil, &Record{Value: []byte("x")}, 19)
	require.Zero(t, s.fits(frame, []uint64{0}, 0))
	_, err = s.Read(19)
	require.ErrorAs(t, err, new(api.ErrOffsetOutOfRange))
	require.NoError(t, s.Close())

	// Reopened: maxed by the store now that it may hold only 20 bytes.
	c.Segment.MaxIndexBytes = 1024
	c.Segment.MaxStoreBytes = 20
	s, err = openSegment(dir, 16, c, false)
	require.NoError(t, err)
	require.Equal(t, uint64(19), s.nextOffset.Load())
	require.True(t, s.IsMaxed(), "maxed by the store")

	require.NoError(t, s.TruncateFrom(17))
	require.Equal(t, uint64(1), s.Len())
	_, err = s.Read(17)
	require.ErrorAs(t, err, new(api.ErrOffsetOutOfRange))

	require.NoError(t, s.Remove())
	for _, path := range []string{s.store.filePath(), s.index.filePath()} {
		_, err := os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist)
	}
}

func TestSegmentFileNames(t *testing.T) {
	tests := []struct {
		name string
		base uint64
		ok   bool
	}{
		{"00000000000000000042.store", 42, true},
		{"18446744073709551615.index", 1<<64 - 1, true},
		{"42.store", 0, false},
		{"00000000000000000042.tmp", 0, false},
		{"0000000000000000004x.index", 0, false},
		{"LOCK", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, ok := parseSegmentFileName(tt.name)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.base, base)
		})
	}
}
