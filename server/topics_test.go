package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/servertest"
)

// TestTopicsOverGRPC walks a topic's life over gRPC: create (idempotent,
// AlreadyExists with another config), produce and consume with offsets of
// its own, describe, list, delete; unknown topics and bad names get their
// codes and say what to do.
func TestTopicsOverGRPC(t *testing.T) {
	ts := newTestServer(t, testConfig(t))
	ctx := testContext(t)
	c := ts.client

	created, err := c.CreateTopic(ctx, &api.CreateTopicRequest{Name: "orders", Config: &api.TopicConfig{MaxSegmentBytes: 4096}})
	require.NoError(t, err)
	require.Equal(t, "orders", created.GetTopic().GetName())
	require.Equal(t, uint64(4096), created.GetTopic().GetConfig().GetMaxSegmentBytes())
	_, err = c.CreateTopic(ctx, &api.CreateTopicRequest{Name: "orders", Config: &api.TopicConfig{MaxSegmentBytes: 4096}})
	require.NoError(t, err, "CreateTopic again with the same config")
	_, err = c.CreateTopic(ctx, &api.CreateTopicRequest{Name: "orders"})
	st := requireCode(t, err, codes.AlreadyExists)
	require.Contains(t, st.Message(), `"orders"`)

	// Offsets are per topic.
	for i := range 3 {
		res, err := c.Produce(ctx, &api.ProduceRequest{Topic: "orders", Record: &api.Record{Value: []byte{'o', byte('0' + i)}}})
		require.NoError(t, err)
		require.Equal(t, uint64(i), res.GetOffset(), "Produce(orders) offset")
	}
	batch, err := c.ProduceBatch(ctx, &api.ProduceBatchRequest{Topic: "orders", Records: []*api.Record{{Value: []byte("o3")}, {Value: []byte("o4")}}})
	require.NoError(t, err)
	require.Equal(t, uint64(3), batch.GetFirstOffset())
	res, err := c.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("d0")}})
	require.NoError(t, err)
	require.Equal(t, uint64(0), res.GetOffset(), "Produce without a topic: the default topic's own offsets")
	res, err = c.Produce(ctx, &api.ProduceRequest{Topic: api.DefaultTopic, Record: &api.Record{Value: []byte("d1")}})
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.GetOffset(), "Produce to \"default\" is the same topic")

	got, err := c.Consume(ctx, &api.ConsumeRequest{Topic: "orders", Offset: 4})
	require.NoError(t, err)
	require.Equal(t, "o4", string(got.GetRecord().GetValue()))
	got, err = c.Consume(ctx, &api.ConsumeRequest{Offset: 1})
	require.NoError(t, err)
	require.Equal(t, "d1", string(got.GetRecord().GetValue()))
	_, err = c.Consume(ctx, &api.ConsumeRequest{Topic: "orders", Offset: 5})
	requireCode(t, err, codes.OutOfRange)

	described, err := c.DescribeTopic(ctx, &api.DescribeTopicRequest{Name: "orders"})
	require.NoError(t, err)
	require.Equal(t, uint64(5), described.GetTopic().GetRecords())
	require.Equal(t, uint64(4), described.GetTopic().GetHighestOffset())
	require.Equal(t, uint64(5), described.GetTopic().GetNextOffset())

	list, err := c.ListTopics(ctx, &api.ListTopicsRequest{})
	require.NoError(t, err)
	var names []string
	for _, topic := range list.GetTopics() {
		names = append(names, topic.GetName())
	}
	require.Equal(t, []string{api.DefaultTopic, "orders"}, names, "ListTopics, sorted by name")

	_, err = c.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: "orders"})
	require.NoError(t, err)
	_, err = c.Consume(ctx, &api.ConsumeRequest{Topic: "orders", Offset: 0})
	st = requireCode(t, err, codes.NotFound)
	require.Contains(t, st.Message(), `topic "orders" does not exist`)
	require.Contains(t, st.Message(), "proglog topic create orders", "NotFound says how to create the topic")
	_, err = c.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: api.DefaultTopic})
	requireCode(t, err, codes.FailedPrecondition)
}

// TestTopicErrorsOverGRPC: every RPC that names a topic refuses a bad name
// with InvalidArgument stating the rule, and an unknown topic with NotFound.
func TestTopicErrorsOverGRPC(t *testing.T) {
	record := &api.Record{Value: []byte("x")}
	calls := map[string]func(ctx context.Context, c api.LogClient, topic string) error{
		"Produce": func(ctx context.Context, c api.LogClient, topic string) error {
			_, err := c.Produce(ctx, &api.ProduceRequest{Topic: topic, Record: record})
			return err
		},
		"ProduceBatch": func(ctx context.Context, c api.LogClient, topic string) error {
			_, err := c.ProduceBatch(ctx, &api.ProduceBatchRequest{Topic: topic, Records: []*api.Record{record}})
			return err
		},
		"ProduceStream": func(ctx context.Context, c api.LogClient, topic string) error {
			stream, err := c.ProduceStream(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&api.ProduceRequest{Topic: topic, Record: record}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = stream.Recv()
			return err
		},
		"Consume": func(ctx context.Context, c api.LogClient, topic string) error {
			_, err := c.Consume(ctx, &api.ConsumeRequest{Topic: topic})
			return err
		},
		"ConsumeStream": func(ctx context.Context, c api.LogClient, topic string) error {
			stream, err := c.ConsumeStream(ctx, &api.ConsumeRequest{Topic: topic})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		},
		"DescribeTopic": func(ctx context.Context, c api.LogClient, topic string) error {
			_, err := c.DescribeTopic(ctx, &api.DescribeTopicRequest{Name: topic})
			return err
		},
		"DeleteTopic": func(ctx context.Context, c api.LogClient, topic string) error {
			_, err := c.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: topic})
			return err
		},
	}
	ts := newTestServer(t, testConfig(t))
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			st := requireCode(t, call(ctx, ts.client, "no/such"), codes.InvalidArgument)
			require.Contains(t, st.Message(), "[A-Za-z0-9._-]{1,249}")
			st = requireCode(t, call(ctx, ts.client, "missing"), codes.NotFound)
			require.Contains(t, st.Message(), `topic "missing" does not exist`)
		})
	}
	t.Run("CreateTopic", func(t *testing.T) {
		ctx := testContext(t)
		for _, bad := range []string{"", ".", "..", "a b", strings.Repeat("x", 250)} {
			_, err := ts.client.CreateTopic(ctx, &api.CreateTopicRequest{Name: bad})
			st := requireCode(t, err, codes.InvalidArgument)
			require.Contains(t, st.Message(), "[A-Za-z0-9._-]{1,249}", "CreateTopic(%q)", bad)
		}
	})
}

// TestConsumeStreamOfATopic: a stream follows its own topic only, and ends
// with NotFound when the topic is deleted under it.
func TestConsumeStreamOfATopic(t *testing.T) {
	log := newTestLog(t)
	cfg := testConfig(t)
	cfg.CommitLog = log
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	_, err := ts.client.CreateTopic(ctx, &api.CreateTopicRequest{Name: "orders"})
	require.NoError(t, err)

	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Topic: "orders"})
	require.NoError(t, err)
	appendDefault(t, log, "not for this stream")
	_, err = ts.client.Produce(ctx, &api.ProduceRequest{Topic: "orders", Record: &api.Record{Value: []byte("o0")}})
	require.NoError(t, err)
	got, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, &api.Record{Value: []byte("o0"), Offset: 0}, &api.Record{Value: got.GetRecord().GetValue(), Offset: got.GetRecord().GetOffset()})

	// The stream now waits at offset 1; deleting the topic ends it.
	require.Eventually(t, func() bool { return log.AppendedCalls() > 0 }, testTimeout, 5*time.Millisecond)
	_, err = ts.client.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: "orders"})
	require.NoError(t, err)
	_, err = stream.Recv()
	requireCode(t, err, codes.NotFound)
}

// TestProduceStreamAcrossTopics: one ProduceStream may write several topics;
// every answer carries the offset in its own request's topic, and requests
// for different topics never share a batch. The first append is held until
// the rest are sent, so that they queue up and are batched.
func TestProduceStreamAcrossTopics(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	gate := newAppendGate()
	log := servertest.NewLog(servertest.WithAppendHook(gate.hook))
	cfg := testConfig(t)
	cfg.CommitLog = &batchRecordingLog{CommitLog: log, mu: &mu, batches: &batches}
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	require.NoError(t, log.CreateTopic(ctx, "a", nil))
	require.NoError(t, log.CreateTopic(ctx, "b", nil))

	topics := []string{"a", "a", "a", "b", "b", "", "default", "a"}
	stream, err := ts.client.ProduceStream(ctx)
	require.NoError(t, err)
	send := func(topic string) {
		require.NoError(t, stream.Send(&api.ProduceRequest{Topic: topic, Record: &api.Record{Value: []byte(topic)}}))
	}
	send(topics[0])
	require.Equal(t, 1, <-gate.entered, "first append")
	for _, topic := range topics[1:] {
		send(topic)
	}
	require.NoError(t, stream.CloseSend())
	released := make(chan struct{})
	go func() {
		defer close(released)
		gate.release <- struct{}{}
		total := 1
		for total < len(topics) {
			total += <-gate.entered
			gate.release <- struct{}{}
		}
	}()
	next := map[string]uint64{}
	for i, topic := range topics {
		res, err := stream.Recv()
		require.NoError(t, err)
		topic = api.TopicOrDefault(topic)
		require.Equalf(t, next[topic], res.GetOffset(), "answer %d (topic %s)", i, topic)
		next[topic]++
	}
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF)
	<-released
	for _, topic := range []string{"a", "b", api.DefaultTopic} {
		require.Equalf(t, int(next[topic]), log.Len(topic), "records in %s", topic)
		for off := range next[topic] {
			r, err := log.Read(ctx, topic, off)
			require.NoError(t, err)
			require.Equal(t, topic, api.TopicOrDefault(string(r.GetValue())), "a record landed in another topic")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("batch sizes: %v", batches)
}

// batchRecordingLog checks that no batch mixes topics (it cannot: a batch
// has one topic argument) and records batch sizes.
type batchRecordingLog struct {
	CommitLog
	mu      *sync.Mutex
	batches *[]int
}

func (l *batchRecordingLog) AppendBatch(ctx context.Context, topic string, records []*api.Record) (uint64, error) {
	for _, r := range records {
		if api.TopicOrDefault(string(r.GetValue())) != topic {
			return 0, errors.New("batch mixes topics")
		}
	}
	l.mu.Lock()
	*l.batches = append(*l.batches, len(records))
	l.mu.Unlock()
	return l.CommitLog.AppendBatch(ctx, topic, records)
}

// topicPolicy allows the listed (subject, topic, action) triples only, as a
// Casbin policy without globs would.
type topicPolicy map[authCall]bool

func (p topicPolicy) Authorize(subject, object, action string) error {
	if p[authCall{subject, object, action}] {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s may not %s on %s", subject, action, object)
}

// TestTopicAuthorization: the object of every check is the topic, so a
// subject may consume one topic and not another; topic admin is its own
// action; ListTopics shows only the topics the subject may consume.
func TestTopicAuthorization(t *testing.T) {
	log := newTestLog(t)
	ctx := testContext(t)
	for _, topic := range []string{"public", "private"} {
		require.NoError(t, log.CreateTopic(ctx, topic, nil))
		_, err := log.AppendBatch(ctx, topic, []*api.Record{{Value: []byte(topic)}})
		require.NoError(t, err)
	}
	cfg := testConfig(t)
	cfg.CommitLog = log
	cfg.Authorizer = topicPolicy{
		{"alice", "public", ConsumeAction}:  true,
		{"alice", "scratch", AdminAction}:   true,
		{"alice", "scratch", ProduceAction}: true,
	}
	c := newTestServer(t, cfg, subjectInterceptors("alice")...).client

	_, err := c.Consume(ctx, &api.ConsumeRequest{Topic: "public"})
	require.NoError(t, err, "alice consumes public")
	_, err = c.Consume(ctx, &api.ConsumeRequest{Topic: "private"})
	requireCode(t, err, codes.PermissionDenied)
	stream, err := c.ConsumeStream(ctx, &api.ConsumeRequest{Topic: "private"})
	require.NoError(t, err)
	_, err = stream.Recv()
	requireCode(t, err, codes.PermissionDenied)
	_, err = c.Consume(ctx, &api.ConsumeRequest{})
	requireCode(t, err, codes.PermissionDenied) // the default topic is a topic like any other
	_, err = c.Produce(ctx, &api.ProduceRequest{Topic: "public", Record: &api.Record{Value: []byte("x")}})
	requireCode(t, err, codes.PermissionDenied)
	_, err = c.DescribeTopic(ctx, &api.DescribeTopicRequest{Name: "private"})
	requireCode(t, err, codes.PermissionDenied)
	_, err = c.DescribeTopic(ctx, &api.DescribeTopicRequest{Name: "public"})
	require.NoError(t, err)

	// A denied subject learns nothing about whether a topic exists.
	_, err = c.Consume(ctx, &api.ConsumeRequest{Topic: "no-such-topic"})
	requireCode(t, err, codes.PermissionDenied)

	list, err := c.ListTopics(ctx, &api.ListTopicsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetTopics(), 1)
	require.Equal(t, "public", list.GetTopics()[0].GetName(), "ListTopics shows what alice may consume")

	// Admin is its own action: alice administers scratch, produces to it,
	// may not administer public, and admin does not grant consume.
	_, err = c.CreateTopic(ctx, &api.CreateTopicRequest{Name: "public"})
	requireCode(t, err, codes.PermissionDenied)
	_, err = c.CreateTopic(ctx, &api.CreateTopicRequest{Name: "scratch"})
	require.NoError(t, err)
	_, err = c.Produce(ctx, &api.ProduceRequest{Topic: "scratch", Record: &api.Record{Value: []byte("x")}})
	require.NoError(t, err)
	_, err = c.Consume(ctx, &api.ConsumeRequest{Topic: "scratch"})
	requireCode(t, err, codes.PermissionDenied)
	_, err = c.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: "private"})
	requireCode(t, err, codes.PermissionDenied)
	_, err = c.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: "scratch"})
	require.NoError(t, err)
	require.Equal(t, 1, log.Len("public"), "a refused produce reached the log")

	// A ProduceStream is authorized per topic it names: the first request
	// to a refused topic ends it, after the ones before it were appended.
	require.NoError(t, log.CreateTopic(ctx, "scratch", nil))
	ps, err := c.ProduceStream(ctx)
	require.NoError(t, err)
	require.NoError(t, ps.Send(&api.ProduceRequest{Topic: "scratch", Record: &api.Record{Value: []byte("ok")}}))
	first, err := ps.Recv()
	require.NoError(t, err)
	require.Equal(t, uint64(0), first.GetOffset())
	if err := ps.Send(&api.ProduceRequest{Topic: "private", Record: &api.Record{Value: []byte("no")}}); err != nil && !errors.Is(err, io.EOF) {
		require.NoError(t, err)
	}
	_, err = ps.Recv()
	requireCode(t, err, codes.PermissionDenied)
	require.Equal(t, 1, log.Len("private"), "a refused stream request reached the log")
}

// TestTopicsOverHTTP covers the topic endpoints and their errors.
func TestTopicsOverHTTP(t *testing.T) {
	cfg := testConfig(t)
	log := newTestLog(t)
	cfg.CommitLog = log
	handler, err := NewHTTPHandler(cfg)
	require.NoError(t, err)
	do := func(method, target, body string) (int, string) {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		return rec.Code, rec.Body.String()
	}
	steps := []struct {
		name     string
		method   string
		target   string
		body     string
		wantCode int
		// wantBody is the exact JSON answer for 200, else a part of the
		// error message.
		wantBody string
	}{
		{"produce to a missing topic", http.MethodPost, "/topics/orders", `{"record":{"value":"eA=="}}`, 404, `topic \"orders\" does not exist; create it first (CreateTopic, PUT /topics/orders`},
		{"create", http.MethodPut, "/topics/orders", ``, 200,
			`{"topic":{"name":"orders","config":{"max_segment_bytes":0,"max_record_bytes":0,"segment_age_ms":0},"lowest_offset":0,"highest_offset":0,"next_offset":0,"records":0,"bytes":0,"segments":1}}`},
		{"create again", http.MethodPut, "/topics/orders", `{}`, 200,
			`{"topic":{"name":"orders","config":{"max_segment_bytes":0,"max_record_bytes":0,"segment_age_ms":0},"lowest_offset":0,"highest_offset":0,"next_offset":0,"records":0,"bytes":0,"segments":1}}`},
		{"create with another config", http.MethodPut, "/topics/orders", `{"config":{"max_segment_bytes":1024}}`, 409, "already exists"},
		{"create with a segment age", http.MethodPut, "/topics/aged", `{"config":{"segment_age_ms":60000}}`, 200,
			`{"topic":{"name":"aged","config":{"max_segment_bytes":0,"max_record_bytes":0,"segment_age_ms":60000},"lowest_offset":0,"highest_offset":0,"next_offset":0,"records":0,"bytes":0,"segments":1}}`},
		{"delete it", http.MethodDelete, "/topics/aged", ``, 200, `{}`},
		{"create with retention", http.MethodPut, "/topics/kept", `{"config":{"retention_bytes":4096,"retention_age_ms":60000}}`, 200,
			`{"topic":{"name":"kept","config":{"max_segment_bytes":0,"max_record_bytes":0,"segment_age_ms":0,"retention_bytes":4096,"retention_age_ms":60000},"lowest_offset":0,"highest_offset":0,"next_offset":0,"records":0,"bytes":0,"segments":1}}`},
		{"delete that", http.MethodDelete, "/topics/kept", ``, 200, `{}`},
		{"create with a bad name", http.MethodPut, "/topics/a..b%20c", ``, 400, "[A-Za-z0-9._-]{1,249}"},
		{"create with bad JSON", http.MethodPut, "/topics/x", `{"config":`, 400, "malformed JSON"},
		{"produce", http.MethodPost, "/topics/orders", `{"record":{"value":"eA=="}}`, 200, `{"offset":0}`},
		{"produce again", http.MethodPost, "/topics/orders", `{"record":{"value":"eQ=="}}`, 200, `{"offset":1}`},
		{"the book's POST / is the default topic", http.MethodPost, "/", `{"record":{"value":"ZA=="}}`, 200, `{"offset":0}`},
		{"consume", http.MethodGet, "/topics/orders?offset=1", ``, 200, `{"record":{"value":"eQ==","offset":1}}`},
		{"consume with a body", http.MethodGet, "/topics/orders", `{"offset":0}`, 200, `{"record":{"value":"eA==","offset":0}}`},
		{"consume the default topic by name", http.MethodGet, "/topics/default?offset=0", ``, 200, `{"record":{"value":"ZA==","offset":0}}`},
		{"consume past the end", http.MethodGet, "/topics/orders?offset=2", ``, 404, "offset out of range: 2"},
		{"list", http.MethodGet, "/topics", ``, 200, `{"topics":[` +
			`{"name":"default","config":{"max_segment_bytes":0,"max_record_bytes":0,"segment_age_ms":0},"lowest_offset":0,"highest_offset":0,"next_offset":1,"records":1,"bytes":1,"segments":1},` +
			`{"name":"orders","config":{"max_segment_bytes":0,"max_record_bytes":0,"segment_age_ms":0},"lowest_offset":0,"highest_offset":1,"next_offset":2,"records":2,"bytes":2,"segments":1}]}`},
		{"POST /topics", http.MethodPost, "/topics", `{}`, 405, "method POST not allowed"},
		{"delete", http.MethodDelete, "/topics/orders", ``, 200, `{}`},
		{"delete again", http.MethodDelete, "/topics/orders", ``, 404, "does not exist"},
		{"delete the default topic", http.MethodDelete, "/topics/default", ``, 409, "cannot be deleted"},
		{"consume a deleted topic", http.MethodGet, "/topics/orders?offset=0", ``, 404, "does not exist"},
	}
	for _, step := range steps {
		code, body := do(step.method, step.target, step.body)
		require.Equalf(t, step.wantCode, code, "%s: %s %s = %d %s", step.name, step.method, step.target, code, body)
		if code == http.StatusOK {
			require.JSONEqf(t, step.wantBody, body, "%s", step.name)
			continue
		}
		var e struct{ Error string }
		require.NoErrorf(t, json.Unmarshal([]byte(body), &e), "%s: error body %q is not JSON", step.name, body)
		require.Containsf(t, body, step.wantBody, "%s: error body", step.name)
	}
}

// TestTopicJSONEffectiveConfig: a topic document carries the topic's
// retention, and the configuration in effect on the answering node when the
// node gives it, and leaves that out when it does not (a node of the release
// before it).
func TestTopicJSONEffectiveConfig(t *testing.T) {
	info := &api.TopicInfo{Name: "orders", Config: &api.TopicConfig{RetentionAgeMs: 3600000},
		EffectiveConfig: &api.TopicConfig{MaxSegmentBytes: 8 << 20, MaxRecordBytes: 1 << 20, RetentionAgeMs: 3600000, SegmentAgeMs: 3600000}}
	got, err := json.Marshal(NewTopicJSON(info))
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"orders","config":{"max_segment_bytes":0,"max_record_bytes":0,"segment_age_ms":0,"retention_age_ms":3600000},`+
		`"effective_config":{"max_segment_bytes":8388608,"max_record_bytes":1048576,"segment_age_ms":3600000,"retention_age_ms":3600000},`+
		`"lowest_offset":0,"highest_offset":0,"next_offset":0,"records":0,"bytes":0,"segments":0}`, string(got))
	info.EffectiveConfig = nil
	got, err = json.Marshal(NewTopicJSON(info))
	require.NoError(t, err)
	require.NotContains(t, string(got), "effective_config")
}

// TestTopicsOverHTTPAuthorization: each HTTP topic endpoint asks about its
// topic and action.
func TestTopicsOverHTTPAuthorization(t *testing.T) {
	tests := []struct {
		method, target, body string
		want                 authCall
	}{
		{http.MethodPost, "/topics/t1", `{"record":{"value":"eA=="}}`, authCall{"nobody", "t1", ProduceAction}},
		{http.MethodGet, "/topics/t1?offset=0", ``, authCall{"nobody", "t1", ConsumeAction}},
		{http.MethodPut, "/topics/t1", ``, authCall{"nobody", "t1", AdminAction}},
		{http.MethodDelete, "/topics/t1", ``, authCall{"nobody", "t1", AdminAction}},
		{http.MethodPost, "/", `{"record":{"value":"eA=="}}`, authCall{"nobody", api.DefaultTopic, ProduceAction}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			cfg := testConfig(t)
			authorizer := &recordingAuthorizer{deny: codes.PermissionDenied}
			cfg.Authorizer = authorizer
			handler, err := NewHTTPHandler(cfg)
			require.NoError(t, err)
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req.WithContext(auth.WithSubject(req.Context(), "nobody")))
			require.Equal(t, http.StatusForbidden, rec.Code, rec.Body.String())
			require.Equal(t, []authCall{tt.want}, authorizer.Calls())
		})
	}
}
