package storage

import (
	"bufio"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStoreAppendRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.store")
	s, err := openStore(path)
	require.NoError(t, err)
	var positions []uint64
	for off := range uint64(4) {
		frame := appendFrame(nil, &Record{Value: storageValue(off)}, off)
		pos, err := s.Append(frame)
		require.NoError(t, err)
		require.Equal(t, s.Size()-uint64(len(frame)), pos)
		positions = append(positions, pos)
	}
	require.Zero(t, s.flushed.Load(), "appends are buffered")
	for off, pos := range positions {
		// Readable while still buffered: the read flushes.
		payload, err := s.Read(pos, 0)
		require.NoError(t, err, "Read(%d)", pos)
		rec, err := decodeRecord(payload)
		require.NoError(t, err)
		require.Equal(t, storageValue(uint64(off)), rec.Value)
	}
	header := make([]byte, frameHeaderWidth)
	n, err := s.ReadAt(header, int64(positions[1]))
	require.NoError(t, err)
	require.Equal(t, frameHeaderWidth, n)

	// With the frame length from the index: one pread, same result; a
	// wrong length falls back to the header.
	frameLen := positions[2] - positions[1]
	for _, hint := range []uint64{frameLen, frameLen - 1, frameLen + 5, 3} {
		payload, err := s.Read(positions[1], hint)
		require.NoError(t, err, "Read(%d, %d)", positions[1], hint)
		rec, err := decodeRecord(payload)
		require.NoError(t, err)
		require.Equal(t, storageValue(1), rec.Value)
	}

	_, err = s.Read(s.Size()-3, 0)
	require.ErrorIs(t, err, errShortFrame)

	require.NoError(t, s.Truncate(positions[2]))
	require.Equal(t, positions[2], s.Size())
	require.NoError(t, s.Close())

	s, err = openStore(path)
	require.NoError(t, err)
	require.Equal(t, positions[2], s.Size(), "size after reopen")
	_, err = s.Read(positions[1], 0)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestFrameChecksumCoversLength(t *testing.T) {
	frame := appendFrame(nil, &Record{Value: []byte("abc")}, 1)
	header, payload := frame[:frameHeaderWidth], frame[frameHeaderWidth:]
	require.NoError(t, checkFrame(header, payload))
	for i := range frame {
		bad := append([]byte(nil), frame...)
		bad[i] ^= 0x01
		require.ErrorIs(t, checkFrame(bad[:frameHeaderWidth], bad[frameHeaderWidth:]), errBadChecksum, "flip at byte %d", i)
	}
}

// failingWriter fails every write, as a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// TestStoreRecoversFromAFailedFlush: after a flush fails (disk full), a
// truncation back to what reached the file clears the error, and appends
// work again; the failed bytes are gone. Before, bufio.Writer's sticky
// error failed every later write and truncation, so a follower whose disk
// filled up never caught up once space was freed (found by test/chaos).
func TestStoreRecoversFromAFailedFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.store")
	s, err := openStore(path)
	require.NoError(t, err)
	defer s.Close()
	good := appendFrame(nil, &Record{Value: storageValue(0)}, 0)
	_, err = s.Append(good)
	require.NoError(t, err)
	require.NoError(t, s.Sync())
	durable := s.Size()

	// The disk fills up: the next flush fails.
	s.mu.Lock()
	s.buf = bufio.NewWriterSize(failingWriter{}, storeBufferBytes)
	s.mu.Unlock()
	_, err = s.Append(appendFrame(nil, &Record{Value: storageValue(1)}, 1))
	require.NoError(t, err, "Append (buffered)")
	require.ErrorIs(t, s.Flush(), syscall.ENOSPC)
	require.ErrorIs(t, s.Flush(), syscall.ENOSPC, "the error stays until the cut")

	// The log cuts back to before the failed append; space is back.
	require.NoError(t, s.Truncate(durable))
	require.Equal(t, durable, s.Size())
	pos, err := s.Append(appendFrame(nil, &Record{Value: storageValue(1)}, 1))
	require.NoError(t, err)
	require.Equal(t, durable, pos)
	require.NoError(t, s.Sync())
	payload, err := s.Read(pos, 0)
	require.NoError(t, err)
	rec, err := decodeRecord(payload)
	require.NoError(t, err)
	require.Equal(t, storageValue(1), rec.Value)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(s.Size()), info.Size(), "file size")
}
