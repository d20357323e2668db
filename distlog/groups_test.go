package distlog

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
)

func commitEntry(index uint64, group, topic string, offset uint64, reset bool) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeCommitOffset(group, topic, offset, reset)}
}

func requireCommitted(t *testing.T, got any, want uint64) {
	t.Helper()
	res := got.(applyResult)
	require.NoError(t, res.err)
	require.Equal(t, want, res.first, "committed offset")
}

func TestCommandCommitOffsetRoundTrip(t *testing.T) {
	c, err := decodeCommand(encodeCommitOffset("g", "t", 9, true))
	require.NoError(t, err)
	require.Equal(t, command{kind: kindCommitOffset, group: "g", topic: "t", offset: 9, reset: true}, c)
	bad := encodeCommitOffset("g", "t", 9, false)
	bad[len(bad)-1] = 2
	_, err = decodeCommand(bad)
	require.ErrorIs(t, err, ErrBadCommand)
}

// Commits are monotonic unless reset, never past the end, per group and
// topic; they survive a restart (replayed after the table's applied index)
// and travel in snapshots; deleting a topic drops its offsets.
func TestFSMConsumerOffsets(t *testing.T) {
	dir := t.TempDir()
	f := newTestFSM(t, dir)
	entries := []*raft.Log{
		entry(1, "a", "b", "c", "d"),
		createEntry(2, "t"),
		appendEntry(3, "t", "x"),
		commitEntry(4, "g", DefaultTopic, 2, false),
		commitEntry(5, "g", DefaultTopic, 1, false), // lower: kept at 2
		commitEntry(6, "h", DefaultTopic, 4, false),
		commitEntry(7, "g", "t", 1, false),
	}
	var results []any
	for _, e := range entries {
		results = append(results, f.Apply(e))
	}
	requireCommitted(t, results[3], 2)
	requireCommitted(t, results[4], 2)
	requireCommitted(t, results[5], 4)
	requireCommitted(t, results[6], 1)

	res := f.Apply(commitEntry(8, "g", DefaultTopic, 5, false)).(applyResult)
	require.ErrorAs(t, res.err, new(api.ErrOffsetOutOfRange), "a commit past the end")
	res = f.Apply(commitEntry(9, "g", "nope", 0, false)).(applyResult)
	require.ErrorIs(t, res.err, api.ErrTopicNotFound)
	res = f.Apply(commitEntry(10, "a/b", DefaultTopic, 0, false)).(applyResult)
	require.ErrorIs(t, res.err, api.ErrInvalidGroupName)
	requireCommitted(t, f.Apply(commitEntry(11, "g", DefaultTopic, 0, true)), 0) // reset goes back
	entries = append(entries, commitEntry(11, "g", DefaultTopic, 0, true))

	want := []GroupInfo{
		{Name: "g", Topics: []GroupTopic{{Topic: DefaultTopic, Committed: 0, NextOffset: 4, Lag: 4}, {Topic: "t", Committed: 1, NextOffset: 1}}},
		{Name: "h", Topics: []GroupTopic{{Topic: DefaultTopic, Committed: 4, NextOffset: 4}}},
	}
	require.Equal(t, want, f.groupInfos(""))

	// Restart: the commits after the table's applied index (2) are
	// replayed and set the same offsets.
	require.NoError(t, f.Close())
	f = newTestFSM(t, dir)
	for _, e := range entries {
		f.Apply(e)
	}
	require.Equal(t, want, f.groupInfos(""))

	// Snapshot → restore.
	snap, err := f.Snapshot()
	require.NoError(t, err)
	data := snapshotBytes(t, snap)
	rf := newTestFSM(t, t.TempDir())
	require.NoError(t, rf.Restore(io.NopCloser(bytes.NewReader(data))))
	require.Equal(t, want, rf.groupInfos(""))

	requireOK(t, f.Apply(deleteEntry(20, "t")))
	require.Equal(t, []GroupTopic{{Topic: DefaultTopic, Committed: 0, NextOffset: 4, Lag: 4}}, f.groupInfos("g")[0].Topics)
}
