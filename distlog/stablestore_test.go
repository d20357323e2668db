package distlog

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFileStableStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stable.json")
	s, err := newFileStableStore(path)
	require.NoError(t, err)

	_, err = s.Get([]byte("vote"))
	require.EqualError(t, err, "not found", "Get of a key never set: raft matches this text")
	n, err := s.GetUint64([]byte("term"))
	require.NoError(t, err)
	require.Zero(t, n)

	require.NoError(t, s.SetUint64([]byte("term"), 7))
	require.NoError(t, s.Set([]byte("vote"), []byte("node-1")))
	require.NoError(t, s.SetUint64([]byte("term"), 8))

	reopened, err := newFileStableStore(path)
	require.NoError(t, err)
	n, err = reopened.GetUint64([]byte("term"))
	require.NoError(t, err)
	require.Equal(t, uint64(8), n, "GetUint64(term) after reopen")
	v, err := reopened.Get([]byte("vote"))
	require.NoError(t, err)
	require.Equal(t, "node-1", string(v))

	leftovers, err := filepath.Glob(filepath.Join(filepath.Dir(path), "*.tmp*"))
	require.NoError(t, err)
	require.Empty(t, leftovers, "temporary files left behind")

	require.NoError(t, os.WriteFile(path, []byte("{torn"), 0o600))
	_, err = newFileStableStore(path)
	require.ErrorContains(t, err, "corrupt")
}
