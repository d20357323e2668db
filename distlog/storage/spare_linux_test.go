package storage

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// FIEMAP (linux/fiemap.h): the extents of a file and their flags.
const (
	fsIocFiemap           = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync        = 0x1
	fiemapExtentUnwritten = 0x800
	fiemapHeaderBytes     = 32
	fiemapExtentBytes     = 56
	fiemapMaxExtents      = 64
)

// unwrittenBytes returns how many bytes of the file at path lie in extents
// the file system marks unwritten (allocated by fallocate, never written),
// and false when the file system does not answer FIEMAP.
func unwrittenBytes(t *testing.T, path string) (uint64, bool) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, fiemapHeaderBytes+fiemapMaxExtents*fiemapExtentBytes)
	binary.NativeEndian.PutUint64(buf[0:], 0)          // fm_start
	binary.NativeEndian.PutUint64(buf[8:], ^uint64(0)) // fm_length
	binary.NativeEndian.PutUint32(buf[16:], fiemapFlagSync)
	binary.NativeEndian.PutUint32(buf[24:], fiemapMaxExtents) // fm_extent_count
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return 0, false
	}
	n := binary.NativeEndian.Uint32(buf[20:]) // fm_mapped_extents
	var unwritten uint64
	for k := range n {
		e := buf[fiemapHeaderBytes+int(k)*fiemapExtentBytes:]
		if binary.NativeEndian.Uint32(e[40:])&fiemapExtentUnwritten != 0 {
			unwritten += binary.NativeEndian.Uint64(e[16:])
		}
	}
	return unwritten, true
}

// TestZeroFillLeavesNoUnwrittenSpace: with ZeroFill, the store files a log
// appends to hold no unwritten extents (whose first write costs the next
// fdatasync a journal commit): the first segment of a new log, the active
// segment after a reopen, and a segment made from a spare. Without it,
// fallocate leaves the free space unwritten (checked, so that the test
// would see the difference).
func TestZeroFillLeavesNoUnwrittenSpace(t *testing.T) {
	// Stores of many blocks: a 4 KiB one is a single block, which the
	// first append writes.
	const storeBytes = 64 << 10
	bigStores := func(c *Config) { c.Segment.MaxStoreBytes = storeBytes }
	plainConfig := func(c *Config) { preallocConfig(c); bigStores(c) }
	zfConfig := func(c *Config) { zeroFillConfig(c); bigStores(c) }
	root, _ := preallocatedLog(t, 0)
	plain := filepath.Join(root, "plain")
	p := openStorageLog(t, plain, plainConfig)
	appendStorageRecords(t, p, 3)
	n, ok := unwrittenBytes(t, segmentPath(plain, 0, storeExt))
	if !ok || n == 0 {
		t.Skip("the file system does not report unwritten extents (FIEMAP)")
	}

	dir := filepath.Join(root, "zf")
	l := openStorageLog(t, dir, zfConfig)
	appendStorageRecords(t, l, 3)
	n, _ = unwrittenBytes(t, segmentPath(dir, 0, storeExt))
	require.Zero(t, n, "unwritten bytes in the first segment")

	base := rollOntoSpare(t, dir, l)
	appendStorageRecords(t, l, 2)
	n, _ = unwrittenBytes(t, segmentPath(dir, base, storeExt))
	require.Zero(t, n, "unwritten bytes in a segment made from a spare")

	require.NoError(t, l.Close())
	// Close cut the active store to its records; the reopen grows it again.
	r := openStorageLog(t, dir, zfConfig)
	appendStorageRecords(t, r, 2)
	require.Equal(t, uint64(storeBytes), fileSize(t, segmentPath(dir, base, storeExt)))
	n, _ = unwrittenBytes(t, segmentPath(dir, base, storeExt))
	require.Zero(t, n, "unwritten bytes in the active segment after a reopen")
}
