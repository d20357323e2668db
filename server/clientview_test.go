package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/servertest"
)

// TestRecordsCarryOnlyValueAndOffset: whatever a log keeps in its records,
// Consume, ConsumeStream and the HTTP API send value and offset only, so the
// record a client consumes equals, whole, the one it produced plus its offset.
func TestRecordsCarryOnlyValueAndOffset(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommitLog = servertest.NewLog(servertest.WithBookkeeping())
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	for _, v := range []string{"zero", "one"} {
		_, err := ts.client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte(v)}})
		require.NoError(t, err)
	}
	want := &api.Record{Value: []byte("one"), Offset: 1}

	consumed, err := ts.client.Consume(ctx, &api.ConsumeRequest{Offset: 1})
	require.NoError(t, err)
	require.Truef(t, proto.Equal(want, consumed.GetRecord()), "Consume(1) = %v, want %v", consumed.GetRecord(), want)

	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 1})
	require.NoError(t, err)
	streamed, err := stream.Recv()
	require.NoError(t, err)
	require.Truef(t, proto.Equal(want, streamed.GetRecord()), "ConsumeStream(1) sent %v, want %v", streamed.GetRecord(), want)

	// Batched, the same: the view applies to every record of a batch.
	batch, err := ts.client.Consume(ctx, &api.ConsumeRequest{Offset: 0, MaxRecords: 10})
	require.NoError(t, err)
	require.Len(t, batch.GetRecords(), 2)
	require.Truef(t, proto.Equal(want, batch.GetRecords()[1]), "batched Consume(0)[1] = %v, want %v", batch.GetRecords()[1], want)
	batchStream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 1, MaxRecords: 10})
	require.NoError(t, err)
	streamedBatch, err := batchStream.Recv()
	require.NoError(t, err)
	require.Len(t, streamedBatch.GetRecords(), 1)
	require.Truef(t, proto.Equal(want, streamedBatch.GetRecords()[0]), "batched ConsumeStream(1) sent %v, want %v", streamedBatch.GetRecords()[0], want)

	handler, err := NewHTTPHandler(cfg)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?offset=1", strings.NewReader("")))
	require.Equal(t, http.StatusOK, rec.Code)
	body, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	var got map[string]map[string]any
	require.NoError(t, json.Unmarshal(body, &got))
	require.Equalf(t, map[string]any{"value": "b25l", "offset": float64(1)}, got["record"], "GET /?offset=1 = %s", body)
}
