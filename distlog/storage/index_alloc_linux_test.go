package storage

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIndexBlocksAreAllocatedWhenGrown: a new index's file has its disk
// blocks when it is mapped, so a write through the map never needs a block
// the disk may not have (on a full disk that write kills the process with
// SIGBUS instead of returning an error).
func TestIndexBlocksAreAllocatedWhenGrown(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	require.NoError(t, err)
	ok, err := preallocateFile(probe, 0, 4096)
	require.NoError(t, errors.Join(err, probe.Close()))
	if !ok {
		t.Skip("this file system cannot preallocate (fallocate): indexes are grown sparse")
	}
	path := filepath.Join(dir, "0.index")
	const maxBytes = 64 * entWidth * 16
	idx, err := openIndex(path, maxBytes)
	require.NoError(t, err)
	defer idx.Close()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	st, ok := fi.Sys().(*syscall.Stat_t)
	require.True(t, ok)
	require.GreaterOrEqual(t, st.Blocks*512, fi.Size(), "index of %d bytes has %d bytes of blocks", fi.Size(), st.Blocks*512)
}
