package distlog

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// be is v as 8 big-endian bytes.
func be(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// TestSegmentAgeCommands: a create with a SegmentAge or retention, and an
// alter, are of the new kinds (8: the whole config in one entry; 9), which
// round-trip; the create-topic (2) and alter-topic (7) entries the previous
// release wrote still decode, the alter one leaving the topic's SegmentAge
// as it is.
func TestSegmentAgeCommands(t *testing.T) {
	cfg := TopicConfig{MaxRecordBytes: 7, SegmentBytes: 1 << 20, SegmentAge: 90 * time.Second,
		RetentionBytes: 1 << 30, RetentionAge: 24 * time.Hour}
	data := encodeCreateTopic("t.1", cfg)
	require.Equal(t, kindCreateTopicConfig, data[1])
	c, err := decodeCommand(data)
	require.NoError(t, err)
	require.Equal(t, command{kind: kindCreateTopicConfig, topic: "t.1", config: cfg}, c)
	for _, one := range []TopicConfig{{SegmentAge: time.Minute}, {RetentionBytes: 1}, {RetentionAge: time.Hour}} {
		data := encodeCreateTopic("t.1", one)
		require.Equal(t, kindCreateTopicConfig, data[1], "%+v", one)
		c, err := decodeCommand(data)
		require.NoError(t, err)
		require.Equal(t, one, c.config)
	}

	alter := TopicConfig{RetentionBytes: 5, RetentionAge: time.Hour, SegmentAge: time.Minute}
	c, err = decodeCommand(encodeAlterTopicAge("t.1", alter))
	require.NoError(t, err)
	require.Equal(t, command{kind: kindAlterTopicAge, topic: "t.1", config: alter}, c)
	c, err = decodeCommand(encodeAlterTopicAge("t.1", TopicConfig{}))
	require.NoError(t, err)
	require.Equal(t, command{kind: kindAlterTopicAge, topic: "t.1"}, c, "an age of 0 is set, not kept")

	// The entries of the previous release, byte for byte.
	oldCreate := append([]byte{2, 2, 3, 't', '.', '1'}, append(be(7), be(1<<20)...)...)
	require.Equal(t, oldCreate, encodeCreateTopic("t.1", TopicConfig{MaxRecordBytes: 7, SegmentBytes: 1 << 20}),
		"a create without SegmentAge is still the kind every release reads")
	c, err = decodeCommand(oldCreate)
	require.NoError(t, err)
	require.Equal(t, command{kind: kindCreateTopic, topic: "t.1", config: TopicConfig{MaxRecordBytes: 7, SegmentBytes: 1 << 20}}, c)
	oldAlter := append([]byte{2, 7, 3, 't', '.', '1'}, append(be(5), be(uint64(time.Hour))...)...)
	require.Equal(t, oldAlter, encodeAlterTopic("t.1", alter), "the retention-only alter is unchanged")
	c, err = decodeCommand(oldAlter)
	require.NoError(t, err)
	require.Equal(t, command{kind: kindAlterTopic, topic: "t.1", keepSegmentAge: true,
		config: TopicConfig{RetentionBytes: 5, RetentionAge: time.Hour}}, c)

	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"create-config cut", data[:len(data)-1]},
		{"create-config without the rest", append([]byte{2, kindCreateTopicConfig}, oldCreate[2:]...)},
		{"create-config without retention", append(append([]byte{2, kindCreateTopicConfig}, oldCreate[2:]...), be(uint64(time.Minute))...)},
		{"create-config negative retention age", append(append(append([]byte{2, kindCreateTopicConfig}, oldCreate[2:]...),
			be(uint64(time.Minute))...), append(be(1), be(math.MaxInt64+1)...)...)},
		{"create with an age", append(bytes.Clone(oldCreate), be(uint64(time.Minute))...)},
		{"alter-age without age", append([]byte{2, kindAlterTopicAge}, oldAlter[2:]...)},
		{"alter-age negative age", append(append([]byte{2, kindAlterTopicAge}, oldAlter[2:]...), be(math.MaxInt64+1)...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCommand(tt.data)
			require.ErrorIs(t, err, ErrBadCommand)
		})
	}
}

func configEntry(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// TestFSMSegmentAge: the FSM applies SegmentAge from create and alter
// entries, keeps it through an old-kind alter, and carries it in the
// metadata table (across a restart) and in snapshots.
func TestFSMSegmentAge(t *testing.T) {
	dir := t.TempDir()
	f := newTestFSM(t, dir)
	ageOf := func(f *fsm, topic string) time.Duration {
		t.Helper()
		f.mu.RLock()
		defer f.mu.RUnlock()
		ts, ok := f.topics[topic]
		require.True(t, ok, "no topic %q", topic)
		return ts.config.SegmentAge
	}
	res := f.ApplyBatch([]*raft.Log{
		configEntry(1, encodeCreateTopic("aged", TopicConfig{SegmentAge: time.Minute})),
		configEntry(2, encodeAlterTopic("aged", TopicConfig{RetentionBytes: 10})),
	})
	requireOK(t, res[0])
	requireOK(t, res[1])
	require.Equal(t, time.Minute, ageOf(f, "aged"), "an alter-topic (7) entry changed SegmentAge")
	requireOK(t, f.Apply(configEntry(3, encodeAlterTopicAge("aged", TopicConfig{RetentionBytes: 10, SegmentAge: time.Hour}))))
	require.Equal(t, time.Hour, ageOf(f, "aged"))
	info := f.topicInfos()[0] // sorted: "aged", "default"
	require.Equal(t, "aged", info.Name)
	require.Equal(t, TopicConfig{MaxRecordBytes: testMaxRecordBytes, SegmentBytes: f.logConfig.Segment.MaxStoreBytes,
		RetentionBytes: 10, SegmentAge: time.Hour}, info.Effective)

	snap, err := f.Snapshot()
	require.NoError(t, err)
	data := snapshotBytes(t, snap)
	require.NoError(t, f.Close())
	reopened := newTestFSM(t, dir)
	require.Equal(t, time.Hour, ageOf(reopened, "aged"), "after a restart")
	restored := newTestFSM(t, t.TempDir())
	require.NoError(t, restored.Restore(io.NopCloser(bytes.NewReader(data))))
	require.Equal(t, time.Hour, ageOf(restored, "aged"), "after a restore")
}

// TestMetadataSegmentAge: the table carries each topic's SegmentAge, and a
// version-4 table (the previous release's, without it) still reads.
func TestMetadataSegmentAge(t *testing.T) {
	m := metadata{applied: 9, producers: newProducerTable(), offsets: map[groupKey]uint64{}, topics: []topicMeta{
		{name: "a", id: 3, config: TopicConfig{SegmentBytes: 4096, RetentionAge: time.Hour, SegmentAge: time.Minute}, lowest: 2},
		{name: "b", id: 5, config: TopicConfig{RetentionBytes: 7}},
	}}
	encoded := m.encode()
	got, err := decodeMetadata(encoded)
	require.NoError(t, err)
	require.Equal(t, m, got)

	body := bytes.Clone(encoded[:len(encoded)-metaChecksumBytes-8*len(m.topics)])
	body[len(metaMagic)] = metaVersionRetention
	v4 := binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
	got, err = decodeMetadata(v4)
	require.NoError(t, err)
	m.topics[0].config.SegmentAge = 0
	require.Equal(t, m, got)

	// A table cut inside the segment age section is refused.
	cut := bytes.Clone(encoded[:len(encoded)-metaChecksumBytes-4])
	cut = binary.BigEndian.AppendUint32(cut, crc32.Checksum(cut, castagnoli))
	_, err = decodeMetadata(cut)
	require.ErrorIs(t, err, ErrBadMetadata)
}

// TestFSMRestoreSetsSegmentAgeOfAKeptTopic: a snapshot that carries an
// alter entry this node missed changes the age its log of the topic rolls
// at, also when the node keeps that log (it holds the same records).
func TestFSMRestoreSetsSegmentAgeOfAKeptTopic(t *testing.T) {
	stamped := func(index uint64, ts time.Duration, value string) *raft.Log {
		return configEntry(index, encodeAppend("aged", int64(ts), [][]byte{[]byte(value)}))
	}
	leader, follower := newTestFSM(t, t.TempDir()), newTestFSM(t, t.TempDir())
	for _, f := range []*fsm{leader, follower} {
		requireOK(t, f.Apply(configEntry(1, encodeCreateTopic("aged", TopicConfig{}))))
		requireResult(t, f.Apply(stamped(2, time.Second, "a")), 0, 1)
	}
	requireOK(t, leader.Apply(configEntry(3, encodeAlterTopicAge("aged", TopicConfig{SegmentAge: time.Second}))))
	snap, err := leader.Snapshot()
	require.NoError(t, err)
	require.NoError(t, follower.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, snap)))))
	require.Zero(t, follower.restoreCount(), "the follower rebuilt the topic: it should keep it")

	// Two seconds after the segment's first record: past the age.
	requireResult(t, follower.Apply(stamped(4, 3*time.Second, "b")), 1, 1)
	follower.mu.RLock()
	segments, err := follower.topics["aged"].log.SegmentCount()
	follower.mu.RUnlock()
	require.NoError(t, err)
	require.Equal(t, 2, segments, "the kept log did not roll at the restored segment age")
}
