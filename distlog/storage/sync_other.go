//go:build !linux

package storage

import "os"

// datasync makes f durable: fsync, where there is no fdatasync.
func datasync(f *os.File) error { return f.Sync() }

// preallocateFile reports false: stores grow as they are written.
func preallocateFile(*os.File, int64, int64) (bool, error) { return false, nil }

// startWriteback does nothing: the fsync that follows writes everything.
func startWriteback(*os.File, uint64, uint64) {}
