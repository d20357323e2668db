package storage

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}

// testdata/v1-log is a log of three records ("first", "second", "third";
// two per segment) written by the format-1 engine (proglog before data
// model v2, commit 0e0b648). It must be refused, whole and unchanged, never
// read as format 2.
func TestFormat1LogIsRefused(t *testing.T) {
	dir := copyDir(t, filepath.Join("testdata", "v1-log"))
	before := readFiles(t, dir)
	_, err := NewLog(dir, Config{})
	require.ErrorIs(t, err, ErrUnsupportedFormat)
	require.Contains(t, err.Error(), "format 1")
	require.NotContains(t, err.Error(), "\n")
	require.Equal(t, before, readFiles(t, dir), "a refused log was changed")
}

func readFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if e.Name() == lockFileName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		files[e.Name()] = string(b)
	}
	return files
}

func TestSegmentHeader(t *testing.T) {
	build := func(t *testing.T) string {
		dir := t.TempDir()
		l := openStorageLog(t, dir, fiveRecordSegments)
		appendStorageRecords(t, l, 12)
		require.NoError(t, l.Close())
		return dir
	}
	tests := []struct {
		name    string
		base    uint64 // the segment damaged; default 5 (sealed)
		damage  func([]byte) []byte
		wantErr error
		next    uint64
	}{
		{name: "intact", damage: func(b []byte) []byte { return b }, next: 12},
		{name: "a zeroed header in the active segment: its creation never reached the disk", base: 10, next: 10,
			damage: func(b []byte) []byte {
				clear(b[:segmentHeaderWidth])
				return b
			}},
		{name: "a torn header in the active segment", base: 10, next: 10, damage: func(b []byte) []byte { return b[:segmentHeaderWidth/2] }},
		// A sealed segment was durable before the next one was created:
		// its header cannot be missing after a crash.
		{name: "a zeroed header in a sealed segment", wantErr: ErrCorrupt, damage: func(b []byte) []byte {
			clear(b[:segmentHeaderWidth])
			return b
		}},
		{name: "a torn header in a sealed segment", wantErr: ErrCorrupt, damage: func(b []byte) []byte { return b[:segmentHeaderWidth/2] }},
		{name: "an empty sealed store", wantErr: ErrCorrupt, damage: func([]byte) []byte { return nil }},
		{name: "a newer format", wantErr: ErrUnsupportedFormat, damage: func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[len(segmentMagic):], FormatVersion+1)
			return b
		}},
		{name: "another segment's header", wantErr: ErrBadSegmentHeader, damage: func(b []byte) []byte {
			copy(b, segmentHeader(99))
			return b
		}},
		{name: "a flipped header byte", wantErr: ErrBadSegmentHeader, damage: func(b []byte) []byte {
			b[10] ^= 1
			return b
		}},
		{name: "garbage", wantErr: ErrBadSegmentHeader, damage: func(b []byte) []byte {
			return []byte(strings.Repeat("garbage!", 8))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := build(t)
			base := tt.base
			if base == 0 {
				base = 5
			}
			path := segmentPath(dir, base, storeExt)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, tt.damage(b), 0o644))
			before := readFiles(t, dir)
			l, err := NewLog(dir, Config{Logger: openStorageLog(t, t.TempDir(), nil).logger})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Contains(t, err.Error(), path)
				require.Equal(t, before, readFiles(t, dir), "a refused log was changed")
				return
			}
			require.NoError(t, err)
			defer l.Close()
			require.Equal(t, tt.next, l.NextOffset())
		})
	}
}
