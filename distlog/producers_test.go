package distlog

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
)

// call is one produce call in a test producer-append entry.
type call struct {
	producer, seq uint64
	values        []string
}

var testLimits = producerLimits{window: 3, maxProducers: 100, idle: int64(time.Hour)}

// producedEntry is a producer-append entry at index to topic, stamped ts.
func producedEntry(index uint64, topic string, ts int64, limits producerLimits, calls ...call) *raft.Log {
	var runs []producerRun
	var values [][]byte
	for _, c := range calls {
		runs = append(runs, producerRun{producer: c.producer, sequence: c.seq, records: uint64(len(c.values))})
		for _, v := range c.values {
			values = append(values, []byte(v))
		}
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeProducerAppend(topic, ts, limits, runs, values)}
}

// want is a call's expected outcome: appended at first (count records),
// a duplicate of first, or refused with a SequenceError expecting expected.
type want struct {
	first, count uint64
	dup          bool
	expected     uint64
	tooOld       bool
	refused      bool
}

func requireRuns(t *testing.T, got any, wants ...want) {
	t.Helper()
	res, ok := got.(applyResult)
	require.True(t, ok, "response %T", got)
	require.NoError(t, res.err)
	require.Len(t, res.runs, len(wants))
	for k, w := range wants {
		r := res.runs[k]
		if w.refused {
			var seqErr api.SequenceError
			require.ErrorAs(t, r.Err, &seqErr, "call %d", k)
			require.ErrorIs(t, r.Err, api.ErrOutOfOrderSequence)
			require.Equal(t, w.expected, seqErr.Expected, "call %d: expected sequence", k)
			require.Equal(t, w.tooOld, seqErr.TooOld, "call %d: TooOld", k)
			continue
		}
		require.NoError(t, r.Err, "call %d", k)
		require.Equal(t, api.ProducerResult{First: w.first, Count: w.count, Duplicate: w.dup}, r, "call %d", k)
	}
}

func TestCommandProducerAppendRoundTrip(t *testing.T) {
	e := producedEntry(1, "t", 77, testLimits, call{5, 9, []string{"a", "b"}}, call{0, 0, []string{""}})
	c, err := decodeCommand(e.Data)
	require.NoError(t, err)
	require.Equal(t, kindProducerAppend, c.kind)
	require.Equal(t, int64(77), c.timestamp)
	require.Equal(t, testLimits, c.limits)
	require.Equal(t, []producerRun{{5, 9, 2}, {0, 0, 1}}, c.runs)
	require.Equal(t, [][]byte{[]byte("a"), []byte("b"), {}}, c.values)
	require.LessOrEqual(t, uint64(len(e.Data)), producerAppendCommandSize("t", 2, []int{1, 1, 0}))

	for _, cut := range []int{3, 20, len(e.Data) - 1} {
		_, err := decodeCommand(e.Data[:cut])
		require.ErrorIs(t, err, ErrBadCommand, "cut at %d", cut)
	}
	zeroRecords := producedEntry(1, "t", 1, testLimits, call{5, 9, nil}, call{5, 10, []string{"x"}})
	_, err = decodeCommand(zeroRecords.Data)
	require.ErrorIs(t, err, ErrBadCommand)
}

func TestFSMProducerDeduplicates(t *testing.T) {
	f := newTestFSM(t, t.TempDir())
	ts := int64(1000)
	apply := func(index uint64, calls ...call) any {
		ts++
		return f.Apply(producedEntry(index, DefaultTopic, ts, testLimits, calls...))
	}
	requireRuns(t, apply(1, call{7, 0, []string{"a"}}), want{first: 0, count: 1})
	requireRuns(t, apply(2, call{7, 1, []string{"b", "c"}}), want{first: 1, count: 2})
	// The retry of an appended call: its offsets, nothing appended.
	requireRuns(t, apply(3, call{7, 1, []string{"b", "c"}}), want{first: 1, count: 2, dup: true})
	requireRuns(t, apply(4, call{7, 0, []string{"a"}}), want{first: 0, count: 1, dup: true})
	// A gap: refused, naming the next sequence.
	requireRuns(t, apply(5, call{7, 3, []string{"x"}}), want{refused: true, expected: 2})
	// An unknown producer starts anywhere; calls without a producer are
	// always appended; one entry holds calls of several producers, and a
	// producer's calls in one entry are decided in order.
	requireRuns(t, apply(6,
		call{9, 42, []string{"p"}}, call{0, 0, []string{"q"}}, call{7, 2, []string{"d"}},
		call{7, 2, []string{"d"}}, call{0, 0, []string{"q"}}, call{7, 3, []string{"e"}}),
		want{first: 3, count: 1}, want{first: 4, count: 1}, want{first: 5, count: 1},
		want{first: 5, count: 1, dup: true}, want{first: 6, count: 1}, want{first: 7, count: 1})
	requireValues(t, f, DefaultTopic, "a", "b", "c", "p", "q", "d", "q", "e")

	// Entries applied together (one ApplyBatch): a retry right behind its
	// call is a duplicate.
	ts++
	responses := f.ApplyBatch([]*raft.Log{
		producedEntry(7, DefaultTopic, ts, testLimits, call{7, 4, []string{"f"}}),
		producedEntry(8, DefaultTopic, ts, testLimits, call{7, 4, []string{"f"}}),
	})
	requireRuns(t, responses[0], want{first: 8, count: 1})
	requireRuns(t, responses[1], want{first: 8, count: 1, dup: true})

	// The window is the last 3 spans (testLimits): calls 1, 2 and 3..4
	// (one-record calls at consecutive offsets share a span); 0 was
	// appended but is older, so it is refused, never appended again.
	requireRuns(t, apply(9, call{7, 0, []string{"a"}}), want{refused: true, expected: 5, tooOld: true})
	requireRuns(t, apply(10, call{7, 1, []string{"b", "c"}}), want{first: 1, count: 2, dup: true})
	requireRuns(t, apply(10, call{7, 3, []string{"e"}}), want{first: 7, count: 1, dup: true})
	requireValues(t, f, DefaultTopic, "a", "b", "c", "p", "q", "d", "q", "e", "f")

	// Sequences are per producer, not per topic; a retry naming another
	// topic than the call it repeats is refused.
	requireOK(t, f.Apply(createEntry(11, "t")))
	ts++
	requireRuns(t, f.Apply(producedEntry(12, "t", ts, testLimits, call{7, 5, []string{"t0"}})), want{first: 0, count: 1})
	ts++
	requireRuns(t, f.Apply(producedEntry(13, DefaultTopic, ts, testLimits, call{7, 5, []string{"t0"}})),
		want{refused: true, expected: 6})
}

// One-record calls at consecutive sequences and offsets (a ProduceStream)
// are kept as one span, so a retry of any of them is known however many
// there were.
func TestFSMProducerStreamSpansMerge(t *testing.T) {
	f := newTestFSM(t, t.TempDir())
	var calls []call
	for seq := uint64(0); seq < 20; seq++ {
		calls = append(calls, call{3, seq, []string{fmt.Sprint(seq)}})
	}
	f.Apply(producedEntry(1, DefaultTopic, 10, testLimits, calls[:7]...))
	f.Apply(producedEntry(2, DefaultTopic, 11, testLimits, calls[7:]...))
	// The stream resent from 5 on, batched differently.
	var wants []want
	for seq := uint64(5); seq < 20; seq++ {
		wants = append(wants, want{first: seq, count: 1, dup: true})
	}
	requireRuns(t, f.Apply(producedEntry(3, DefaultTopic, 12, testLimits, calls[5:]...)), wants...)
	require.Equal(t, uint64(20), f.topics[DefaultTopic].log.NextOffset())
	require.Len(t, f.producers.byID[3].spans, 1)
}

// Expiry and eviction are decided by the leaders' timestamps on the
// entries, so every node decides alike.
func TestFSMProducerExpiryAndEviction(t *testing.T) {
	limits := producerLimits{window: 5, maxProducers: 2, idle: 100}
	f := newTestFSM(t, t.TempDir())
	requireRuns(t, f.Apply(producedEntry(1, DefaultTopic, 1000, limits, call{1, 0, []string{"a"}})), want{first: 0, count: 1})
	// 100 ns later producer 1 is still known...
	requireRuns(t, f.Apply(producedEntry(2, DefaultTopic, 1100, limits, call{1, 0, []string{"a"}})), want{first: 0, count: 1, dup: true})
	// ...a plain append stamped 201 ns after its last call moves the clock
	// past its expiry: forgotten, so its old call is a new one.
	requireResult(t, f.Apply(appendEntry(3, DefaultTopic, "x")), 1, 1)
	f.producers.advance(1301)
	requireRuns(t, f.Apply(producedEntry(4, DefaultTopic, 1000, limits, call{1, 0, []string{"a"}})), want{first: 2, count: 1})

	// Two producers at most: a third evicts the one idle longest.
	requireRuns(t, f.Apply(producedEntry(5, DefaultTopic, 1310, limits, call{2, 0, []string{"b"}})), want{first: 3, count: 1})
	requireRuns(t, f.Apply(producedEntry(6, DefaultTopic, 1320, limits, call{3, 0, []string{"c"}})), want{first: 4, count: 1})
	require.Len(t, f.producers.byID, 2)
	require.NotContains(t, f.producers.byID, uint64(1))
	requireRuns(t, f.Apply(producedEntry(7, DefaultTopic, 1330, limits, call{2, 0, []string{"b"}})), want{first: 3, count: 1, dup: true})
}

// The producer state is rebuilt exactly after a restart (Raft replays the
// entries after the table's applied index) and travels in snapshots: a
// retry that arrives after either is still recognised.
func TestFSMProducerStateSurvivesRestartAndSnapshot(t *testing.T) {
	dir := t.TempDir()
	f := newTestFSM(t, dir)
	entries := []*raft.Log{
		producedEntry(1, DefaultTopic, 10, testLimits, call{7, 0, []string{"a"}}),
		producedEntry(2, DefaultTopic, 11, testLimits, call{7, 1, []string{"b", "c"}}, call{8, 0, []string{"x"}}),
		createEntry(3, "t"), // the table is written here, with the producers
		producedEntry(4, DefaultTopic, 12, testLimits, call{7, 1, []string{"b", "c"}}),
		producedEntry(5, "t", 13, testLimits, call{7, 2, []string{"t0"}}, call{8, 1, []string{"y"}}),
		producedEntry(6, DefaultTopic, 14, testLimits, call{9, 0, []string{"z"}}),
	}
	var before []any
	for _, e := range entries {
		before = append(before, f.Apply(e))
	}
	requireRuns(t, before[3], want{first: 1, count: 2, dup: true})
	require.NoError(t, f.Close())

	// Restart: every entry replayed; none appends again.
	f = newTestFSM(t, dir)
	for _, e := range entries {
		res := f.Apply(e).(applyResult)
		require.NoError(t, res.err, "replay of %d", e.Index)
	}
	requireValues(t, f, DefaultTopic, "a", "b", "c", "x", "z")
	requireValues(t, f, "t", "t0", "y")
	retries := func(f *fsm, index uint64) {
		t.Helper()
		requireRuns(t, f.Apply(producedEntry(index, DefaultTopic, 20, testLimits, call{7, 1, []string{"b", "c"}})),
			want{first: 1, count: 2, dup: true})
		requireRuns(t, f.Apply(producedEntry(index+1, "t", 20, testLimits, call{8, 1, []string{"y"}})),
			want{first: 1, count: 1, dup: true})
		requireRuns(t, f.Apply(producedEntry(index+2, DefaultTopic, 20, testLimits, call{9, 0, []string{"z"}})),
			want{first: 4, count: 1, dup: true})
		requireRuns(t, f.Apply(producedEntry(index+3, DefaultTopic, 20, testLimits, call{9, 2, []string{"w"}})),
			want{refused: true, expected: 1})
	}
	retries(f, 7)

	// Snapshot → a fresh node restores it and knows every producer.
	snap, err := f.Snapshot()
	require.NoError(t, err)
	data := snapshotBytes(t, snap)
	rf := newTestFSM(t, t.TempDir())
	require.NoError(t, rf.Restore(io.NopCloser(bytes.NewReader(data))))
	retries(rf, 20)
	requireValues(t, rf, DefaultTopic, "a", "b", "c", "x", "z")
}

func TestMetadataWithProducersRoundTrip(t *testing.T) {
	m := metadata{applied: 9, topics: []topicMeta{{name: DefaultTopic}}, producers: newProducerTable()}
	m.producers.clock = 1234
	m.producers.byID[5] = &producerState{id: 5, lastSeq: 8, lastSeen: 1200,
		spans: []producerSpan{{topicID: 0, firstSeq: 4, lastSeq: 8, firstOffset: 10, count: 5}}}
	m.producers.byID[6] = &producerState{id: 6, lastSeq: 0, lastSeen: 1}
	m.offsets = map[groupKey]uint64{{"g", DefaultTopic}: 7, {"g", "t"}: 0, {"h", DefaultTopic}: 1 << 40}
	got, err := decodeMetadata(m.encode())
	require.NoError(t, err)
	require.Equal(t, m, got)

	// A version-1 table (no producer section) still reads.
	v1 := metadata{applied: 3, topics: []topicMeta{{name: DefaultTopic}}}.encode()
	body := v1[:len(v1)-metaChecksumBytes]
	body = body[:len(body)-producerSectionHeadBytes-4-24-8]
	body[len(metaMagic)] = metaVersionTopics
	old := append(bytes.Clone(body), 0, 0, 0, 0)
	sum := crc32Checksum(body)
	copy(old[len(body):], sum)
	got, err = decodeMetadata(old)
	require.NoError(t, err)
	require.Equal(t, uint64(3), got.applied)
	require.Empty(t, got.producers.byID)
}

func crc32Checksum(b []byte) []byte {
	var out [4]byte
	sum := crc32.Checksum(b, castagnoli)
	out[0], out[1], out[2], out[3] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
	return out[:]
}
