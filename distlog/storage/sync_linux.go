package storage

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// datasync makes f's data durable, and the metadata needed to read it
// back (its size), but not its timestamps: fdatasync(2).
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// preallocateFile allocates n bytes of zeroes at off in f, growing it
// (fallocate(2), mode 0). It reports false, with no error, when the file
// system cannot preallocate.
func preallocateFile(f *os.File, off, n int64) (bool, error) {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, off, n)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			return false, nil
		default:
			return false, err
		}
	}
}

// startWriteback asks the kernel to start writing the file's dirty pages
// in [off, off+n) to disk, without waiting for it (sync_file_range(2)
// with SYNC_FILE_RANGE_WRITE): nothing is made durable, a later fsync
// still is what does that, but it finds less to write. Errors are left to
// that fsync, which reports a failed writeback.
func startWriteback(f *os.File, off, n uint64) {
	_ = unix.SyncFileRange(int(f.Fd()), int64(off), int64(n), unix.SYNC_FILE_RANGE_WRITE)
}
