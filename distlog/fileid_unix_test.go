//go:build unix

package distlog

import (
	"io/fs"
	"syscall"
)

// fileID names the file behind info (device and inode), so that hard links
// are counted once.
func fileID(info fs.FileInfo) any {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return [2]uint64{uint64(st.Dev), st.Ino}
	}
	return info.Name()
}
