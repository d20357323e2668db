package servertest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server"
	"github.com/proglog/proglog/server/servertest"
)

var _ server.CommitLog = (*servertest.Log)(nil)

func TestLog(t *testing.T) {
	ctx := t.Context()
	log := servertest.NewLog()
	appended := log.Appended(api.DefaultTopic)

	off, err := log.AppendBatch(ctx, api.DefaultTopic, []*api.Record{{Value: []byte("a"), Term: 9}})
	require.NoError(t, err)
	require.Equal(t, uint64(0), off)
	select {
	case <-appended:
	default:
		t.Fatal("Appended() channel not closed by an append")
	}

	first, err := log.AppendBatch(ctx, api.DefaultTopic, []*api.Record{{Value: []byte("b")}, {Value: []byte("c")}})
	require.NoError(t, err)
	require.Equal(t, uint64(1), first, "AppendBatch first offset")
	for i, want := range []string{"a", "b", "c"} {
		got, err := log.Read(ctx, api.DefaultTopic, uint64(i))
		require.NoError(t, err)
		require.Equalf(t, &api.Record{Value: []byte(want), Offset: uint64(i)}, got, "Read(%d)", i)
	}
	_, err = log.Read(ctx, api.DefaultTopic, 3)
	var oor api.ErrOffsetOutOfRange
	require.ErrorAs(t, err, &oor)
	require.Equal(t, uint64(3), oor.Offset)

	_, err = log.AppendBatch(ctx, api.DefaultTopic, nil)
	require.ErrorIs(t, err, api.ErrEmptyBatch)
	_, err = log.AppendBatch(ctx, api.DefaultTopic, []*api.Record{nil})
	require.ErrorIs(t, err, api.ErrNoRecord)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = log.AppendBatch(canceled, api.DefaultTopic, []*api.Record{{Value: []byte("d")}})
	require.ErrorIs(t, err, context.Canceled)

	require.Equal(t, 3, log.Len(api.DefaultTopic))
	require.Equal(t, int64(4), log.Reads())
	require.Equal(t, int64(5), log.Appends())
	require.Equal(t, int64(1), log.AppendedCalls())
}

func TestLogOptions(t *testing.T) {
	ctx := t.Context()
	errDisk := errors.New("disk on fire")

	failing := servertest.NewLog(servertest.FailWith(errDisk))
	_, err := failing.AppendBatch(ctx, api.DefaultTopic, []*api.Record{{Value: []byte("a")}})
	require.ErrorIs(t, err, errDisk)
	_, err = failing.Read(ctx, api.DefaultTopic, 0)
	require.ErrorIs(t, err, errDisk)
	require.Equal(t, 0, failing.Len(api.DefaultTopic), "a failed append appended")

	var seen []int
	hooked := servertest.NewLog(
		servertest.WithAppendHook(func(_ context.Context, records []*api.Record) error {
			seen = append(seen, len(records))
			return nil
		}),
		servertest.WithReadHook(func(_ context.Context, offset uint64) error {
			if offset == 1 {
				return errDisk
			}
			return nil
		}),
		servertest.WithBookkeeping(),
	)
	_, err = hooked.AppendBatch(ctx, api.DefaultTopic, []*api.Record{{Value: []byte("a")}, {Value: []byte("b")}})
	require.NoError(t, err)
	require.Equal(t, []int{2}, seen)
	got, err := hooked.Read(ctx, api.DefaultTopic, 0)
	require.NoError(t, err)
	require.NotZero(t, got.GetTerm(), "WithBookkeeping: term not set")
	require.NotZero(t, got.GetType(), "WithBookkeeping: type not set")
	_, err = hooked.Read(ctx, api.DefaultTopic, 1)
	require.ErrorIs(t, err, errDisk)
}

// TestLogTopics: topics are independent logs with their own offsets;
// creation is idempotent for the same config; deletion wakes waiting readers;
// names are checked.
func TestLogTopics(t *testing.T) {
	ctx := t.Context()
	log := servertest.NewLog()

	_, err := log.AppendBatch(ctx, "orders", []*api.Record{{Value: []byte("x")}})
	require.ErrorIs(t, err, api.ErrTopicNotFound)
	require.ErrorIs(t, log.CreateTopic(ctx, "a/b", nil), api.ErrInvalidTopicName)

	require.NoError(t, log.CreateTopic(ctx, "orders", nil))
	require.NoError(t, log.CreateTopic(ctx, "orders", &api.TopicConfig{}), "same config again")
	require.ErrorIs(t, log.CreateTopic(ctx, "orders", &api.TopicConfig{MaxSegmentBytes: 1}), api.ErrTopicExists)

	for i := range 3 {
		off, err := log.AppendBatch(ctx, "orders", []*api.Record{{Value: []byte("o")}})
		require.NoError(t, err)
		require.Equal(t, uint64(i), off, "orders offset")
	}
	off, err := log.AppendBatch(ctx, api.DefaultTopic, []*api.Record{{Value: []byte("d")}})
	require.NoError(t, err)
	require.Equal(t, uint64(0), off, "default offset is its own")

	topics, err := log.ListTopics(ctx)
	require.NoError(t, err)
	require.Len(t, topics, 2)
	require.Equal(t, api.DefaultTopic, topics[0].GetName())
	require.Equal(t, "orders", topics[1].GetName())
	require.Equal(t, uint64(3), topics[1].GetRecords())
	require.Equal(t, uint64(2), topics[1].GetHighestOffset())

	waiting := log.Appended("orders")
	require.NoError(t, log.DeleteTopic(ctx, "orders"))
	select {
	case <-waiting:
	default:
		t.Fatal("deleting a topic did not wake its readers")
	}
	_, err = log.Read(ctx, "orders", 0)
	require.ErrorIs(t, err, api.ErrTopicNotFound)
	_, err = log.DescribeTopic(ctx, "orders")
	require.ErrorIs(t, err, api.ErrTopicNotFound)
	require.ErrorIs(t, log.DeleteTopic(ctx, api.DefaultTopic), api.ErrDeleteDefaultTopic)
}
