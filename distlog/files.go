package distlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/proglog/proglog/distlog/storage"
)

// writeFileAtomic replaces path with data durably: a temporary file in the
// same directory is written and fsynced, renamed over path, and the
// directory fsynced. A crash leaves the old file or the new one, never a
// mix.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("distlog: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.Remove(tmp.Name()))
		}
	}()
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("distlog: write %s: %w", path, err)
	}
	return storage.SyncDir(dir)
}
