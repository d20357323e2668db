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
	appended := log.Appended()

	off, err := log.Append(ctx, &api.Record{Value: []byte("a"), Term: 9})
	require.NoError(t, err)
	require.Equal(t, uint64(0), off)
	select {
	case <-appended:
	default:
		t.Fatal("Appended() channel not closed by an append")
	}

	first, err := log.AppendBatch(ctx, []*api.Record{{Value: []byte("b")}, {Value: []byte("c")}})
	require.NoError(t, err)
	require.Equal(t, uint64(1), first, "AppendBatch first offset")
	for i, want := range []string{"a", "b", "c"} {
		got, err := log.Read(ctx, uint64(i))
		require.NoError(t, err)
		require.Equalf(t, &api.Record{Value: []byte(want), Offset: uint64(i)}, got, "Read(%d)", i)
	}
	_, err = log.Read(ctx, 3)
	var oor api.ErrOffsetOutOfRange
	require.ErrorAs(t, err, &oor)
	require.Equal(t, uint64(3), oor.Offset)

	_, err = log.AppendBatch(ctx, nil)
	require.ErrorIs(t, err, api.ErrEmptyBatch)
	_, err = log.AppendBatch(ctx, []*api.Record{nil})
	require.ErrorIs(t, err, api.ErrNoRecord)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = log.Append(canceled, &api.Record{Value: []byte("d")})
	require.ErrorIs(t, err, context.Canceled)

	require.Equal(t, 3, log.Len())
	require.Equal(t, int64(4), log.Reads())
	require.Equal(t, int64(5), log.Appends())
	require.Equal(t, int64(1), log.AppendedCalls())
}

func TestLogOptions(t *testing.T) {
	ctx := t.Context()
	errDisk := errors.New("disk on fire")

	failing := servertest.NewLog(servertest.FailWith(errDisk))
	_, err := failing.Append(ctx, &api.Record{Value: []byte("a")})
	require.ErrorIs(t, err, errDisk)
	_, err = failing.Read(ctx, 0)
	require.ErrorIs(t, err, errDisk)
	require.Equal(t, 0, failing.Len(), "a failed append appended")

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
	_, err = hooked.AppendBatch(ctx, []*api.Record{{Value: []byte("a")}, {Value: []byte("b")}})
	require.NoError(t, err)
	require.Equal(t, []int{2}, seen)
	got, err := hooked.Read(ctx, 0)
	require.NoError(t, err)
	require.NotZero(t, got.GetTerm(), "WithBookkeeping: term not set")
	require.NotZero(t, got.GetType(), "WithBookkeeping: type not set")
	_, err = hooked.Read(ctx, 1)
	require.ErrorIs(t, err, errDisk)
}
