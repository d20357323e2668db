package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/servertest"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// testConfig returns a Config on an empty in-memory log that allows every
// call.
func testConfig(t *testing.T) *Config {
	t.Helper()
	return &Config{
		CommitLog:  newTestLog(t),
		Authorizer: allowAll{},
		ID:         "node-0",
		RPCAddr:    "127.0.0.1:8400",
		Logger:     zaptest.NewLogger(t),
	}
}

// testServer is a gRPC server on 127.0.0.1:0 and a client connected to it
// without TLS.
type testServer struct {
	srv    *grpc.Server
	conn   *grpc.ClientConn
	client api.LogClient
}

// newTestServer serves cfg on 127.0.0.1:0 and connects a client. The server
// and client are stopped at the end of the test.
func newTestServer(t testing.TB, cfg *Config, opts ...grpc.ServerOption) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv, err := NewGRPCServer(cfg, opts...)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, conn.Close())
		srv.Stop()
		require.NoError(t, <-served)
	})
	return &testServer{srv: srv, conn: conn, client: api.NewLogClient(conn)}
}

// testContext is a context that ends with the test, or after testTimeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// requireCode fails unless err is a status error with code want.
func requireCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	require.Truef(t, ok, "error %v is not a gRPC status", err)
	require.Equalf(t, want, st.Code(), "code of %v = %s, want %s", err, st.Code(), want)
	return st
}

// The seed book's scenarios, on a real gRPC server.
func TestServer(t *testing.T) {
	for scenario, fn := range map[string]func(t *testing.T, client api.LogClient){
		"produce/consume a message to/from the log succeeds": testProduceConsume,
		"consume past log boundary fails":                    testConsumePastBoundary,
		"produce/consume stream succeeds":                    testProduceConsumeStream,
		"produce batch appends contiguously":                 testProduceBatch,
	} {
		t.Run(scenario, func(t *testing.T) {
			ts := newTestServer(t, testConfig(t))
			fn(t, ts.client)
		})
	}
}

func testProduceConsume(t *testing.T, client api.LogClient) {
	ctx := testContext(t)
	want := &api.Record{Value: []byte("hello world")}
	produce, err := client.Produce(ctx, &api.ProduceRequest{Record: want})
	require.NoError(t, err)
	consume, err := client.Consume(ctx, &api.ConsumeRequest{Offset: produce.Offset})
	require.NoError(t, err)
	require.Equalf(t, want.Value, consume.Record.Value, "Consume(%d).Value = %q, want %q", produce.Offset, consume.Record.Value, want.Value)
	require.Equalf(t, produce.Offset, consume.Record.Offset, "Consume(%d).Offset = %d, want %d", produce.Offset, consume.Record.Offset, produce.Offset)
}

func testConsumePastBoundary(t *testing.T, client api.LogClient) {
	ctx := testContext(t)
	produce, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("hello world")}})
	require.NoError(t, err)
	consume, err := client.Consume(ctx, &api.ConsumeRequest{Offset: produce.Offset + 1})
	require.Nilf(t, consume, "Consume(%d) = %v, want nil", produce.Offset+1, consume)
	st := requireCode(t, err, codes.OutOfRange)
	require.Contains(t, st.Message(), fmt.Sprint(produce.Offset+1))
	var localized *errdetails.LocalizedMessage
	for _, d := range st.Details() {
		if m, ok := d.(*errdetails.LocalizedMessage); ok {
			localized = m
		}
	}
	require.NotNil(t, localized, "details of %v lack the api package's LocalizedMessage", st)
}

func testProduceConsumeStream(t *testing.T, client api.LogClient) {
	ctx := testContext(t)
	records := []*api.Record{
		{Value: []byte("first message"), Offset: 0},
		{Value: []byte("second message"), Offset: 1},
	}
	{
		stream, err := client.ProduceStream(ctx)
		require.NoError(t, err)
		for offset, record := range records {
			require.NoError(t, stream.Send(&api.ProduceRequest{Record: record}))
			res, err := stream.Recv()
			require.NoError(t, err)
			require.Equalf(t, uint64(offset), res.Offset, "ProduceStream offset = %d, want %d", res.Offset, offset)
		}
		require.NoError(t, stream.CloseSend())
		_, err = stream.Recv()
		require.ErrorIsf(t, err, io.EOF, "Recv after CloseSend = %v, want io.EOF (a clean end)", err)
	}
	{
		stream, err := client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
		require.NoError(t, err)
		for i, want := range records {
			res, err := stream.Recv()
			require.NoError(t, err)
			require.Equalf(t, want.Value, res.Record.Value, "ConsumeStream record %d value = %q, want %q", i, res.Record.Value, want.Value)
			require.Equalf(t, want.Offset, res.Record.Offset, "ConsumeStream record %d offset = %d, want %d", i, res.Record.Offset, want.Offset)
		}
	}
}

func testProduceBatch(t *testing.T, client api.LogClient) {
	ctx := testContext(t)
	_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("before")}})
	require.NoError(t, err)
	values := [][]byte{[]byte("a"), {}, []byte("c")}
	batch := make([]*api.Record, len(values))
	for i, v := range values {
		batch[i] = &api.Record{Value: v}
	}
	res, err := client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: batch})
	require.NoError(t, err)
	require.Equalf(t, uint64(1), res.FirstOffset, "ProduceBatch first offset = %d, want 1", res.FirstOffset)
	require.Equalf(t, uint64(len(values)), res.Count, "ProduceBatch count = %d, want %d", res.Count, len(values))
	for i, want := range values {
		offset := res.FirstOffset + uint64(i)
		got, err := client.Consume(ctx, &api.ConsumeRequest{Offset: offset})
		require.NoError(t, err)
		require.Truef(t, bytes.Equal(want, got.Record.Value), "Consume(%d).Value = %q, want %q", offset, got.Record.Value, want)
	}
}

// TestBadInput sends invalid input to every RPC that takes any, and checks
// that only the valid records reach the log.
func TestBadInput(t *testing.T) {
	const (
		maxRecord     = 16
		maxBatch      = 4
		maxBatchBytes = 32
	)
	value := func(n int) []byte { return bytes.Repeat([]byte{'v'}, n) }
	records := func(sizes ...int) []*api.Record {
		rs := make([]*api.Record, len(sizes))
		for i, n := range sizes {
			if n >= 0 {
				rs[i] = &api.Record{Value: value(n)}
			}
		}
		return rs
	}
	tests := []struct {
		name string
		// call makes the RPC and returns its error and the number of records
		// the server acknowledged before it.
		call        func(ctx context.Context, client api.LogClient) (acked int, err error)
		wantCode    codes.Code
		wantMessage string
		wantAcked   int
	}{
		{
			name: "Produce without a record",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.Produce(ctx, &api.ProduceRequest{})
				return 0, err
			},
			wantCode:    codes.InvalidArgument,
			wantMessage: "no record",
		},
		{
			name: "Produce over MaxRecordBytes",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: value(maxRecord + 1)}})
				return 0, err
			},
			wantCode:    codes.InvalidArgument,
			wantMessage: "value is 17 bytes, over the 16-byte limit",
		},
		{
			name: "Produce an empty value is valid",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{}})
				return 1, err
			},
			wantCode:  codes.OK,
			wantAcked: 1,
		},
		{
			name: "Produce at MaxRecordBytes is valid",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: value(maxRecord)}})
				return 1, err
			},
			wantCode:  codes.OK,
			wantAcked: 1,
		},
		{
			name: "ProduceBatch without records",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.ProduceBatch(ctx, &api.ProduceBatchRequest{})
				return 0, err
			},
			wantCode:    codes.InvalidArgument,
			wantMessage: "no records",
		},
		{
			name: "ProduceBatch over MaxBatchRecords",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: records(1, 1, 1, 1, 1)})
				return 0, err
			},
			wantCode:    codes.InvalidArgument,
			wantMessage: "5 records, over the limit of 4",
		},
		// A nil element of a repeated field goes on the wire as an empty
		// record, which is valid; there is no "missing record" in a batch.
		{
			name: "ProduceBatch with a record over MaxRecordBytes",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: records(1, 1, maxRecord+1)})
				return 0, err
			},
			wantCode:    codes.InvalidArgument,
			wantMessage: "record 2: record too large: value is 17 bytes",
		},
		{
			name: "ProduceBatch over MaxBatchBytes",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: records(16, 16, 1)})
				return 0, err
			},
			wantCode:    codes.InvalidArgument,
			wantMessage: "values total 33 bytes, over the 32-byte limit",
		},
		{
			name: "ProduceStream without a record, after valid ones",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				return produceStream(ctx, client, records(1, 2, -1, 3))
			},
			wantCode:    codes.InvalidArgument,
			wantMessage: "no record",
			wantAcked:   2,
		},
		{
			name: "ProduceStream over MaxRecordBytes",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				return produceStream(ctx, client, records(1, maxRecord+1))
			},
			wantCode:    codes.InvalidArgument,
			wantMessage: "over the 16-byte limit",
			wantAcked:   1,
		},
		{
			name: "Consume past the end",
			call: func(ctx context.Context, client api.LogClient) (int, error) {
				_, err := client.Consume(ctx, &api.ConsumeRequest{Offset: 1 << 40})
				return 0, err
			},
			wantCode:    codes.OutOfRange,
			wantMessage: "offset out of range: 1099511627776",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxRecordBytes = maxRecord
			cfg.MaxBatchRecords = maxBatch
			cfg.MaxBatchBytes = maxBatchBytes
			commitLog := newTestLog(t)
			cfg.CommitLog = commitLog
			ts := newTestServer(t, cfg)
			ctx := testContext(t)

			acked, err := tt.call(ctx, ts.client)
			st := requireCode(t, err, tt.wantCode)
			require.Contains(t, st.Message(), tt.wantMessage)
			require.Equalf(t, tt.wantAcked, acked, "records acknowledged = %d, want %d", acked, tt.wantAcked)

			// Only the records acknowledged before the error reached the log.
			require.Equalf(t, tt.wantAcked, commitLog.Len(api.DefaultTopic),
				"records in the log = %d, want the %d acknowledged: a refused record reached the log", commitLog.Len(api.DefaultTopic), tt.wantAcked)
		})
	}
}

// produceStream sends records on a ProduceStream, then closes its send side,
// and returns how many offsets came back (they must be contiguous) and the
// stream's final error (nil for a clean end).
func produceStream(ctx context.Context, client api.LogClient, records []*api.Record) (int, error) {
	stream, err := client.ProduceStream(ctx)
	if err != nil {
		return 0, err
	}
	for _, r := range records {
		if err := stream.Send(&api.ProduceRequest{Record: r}); err != nil {
			// The server ended the stream; Recv below tells why.
			break
		}
	}
	if err := stream.CloseSend(); err != nil {
		return 0, err
	}
	acked := 0
	var first uint64
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return acked, nil
		}
		if err != nil {
			return acked, err
		}
		if acked == 0 {
			first = res.Offset
		}
		if want := first + uint64(acked); res.Offset != want {
			return acked, fmt.Errorf("answer %d has offset %d, want %d", acked, res.Offset, want)
		}
		acked++
	}
}

// TestProduceStreamCloseSendIsCleanEnd: a client closing its send side gets
// every answer, then a clean end.
func TestProduceStreamCloseSendIsCleanEnd(t *testing.T) {
	ts := newTestServer(t, testConfig(t))
	ctx := testContext(t)
	records := make([]*api.Record, 100)
	for i := range records {
		records[i] = &api.Record{Value: fmt.Appendf(nil, "record %d", i)}
	}
	acked, err := produceStream(ctx, ts.client, records)
	require.NoErrorf(t, err, "ProduceStream ended with %v after CloseSend, want a clean end", err)
	require.Equalf(t, len(records), acked, "ProduceStream answered %d records, want %d", acked, len(records))
}

// subjectInterceptors put a fixed subject in every call's context, as
// server/auth's interceptors do with a certificate's Common Name.
func subjectInterceptors(subject string) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return handler(auth.WithSubject(ctx, subject), req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, &contextStream{ServerStream: ss, ctx: auth.WithSubject(ss.Context(), subject)})
		}),
	}
}

// contextStream is a ServerStream with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// TestAuthorization checks that every RPC asks the Authorizer about the
// caller's subject and the right action, once per call (streams included),
// and returns its refusal.
func TestAuthorization(t *testing.T) {
	record := &api.Record{Value: []byte("x")}
	tests := []struct {
		name       string
		call       func(ctx context.Context, client api.LogClient) error
		wantAction string // "" for no check
	}{
		{"Produce", func(ctx context.Context, c api.LogClient) error {
			_, err := c.Produce(ctx, &api.ProduceRequest{Record: record})
			return err
		}, ProduceAction},
		{"ProduceBatch", func(ctx context.Context, c api.LogClient) error {
			_, err := c.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: []*api.Record{record, record}})
			return err
		}, ProduceAction},
		{"ProduceStream", func(ctx context.Context, c api.LogClient) error {
			_, err := produceStream(ctx, c, []*api.Record{record, record, record})
			return err
		}, ProduceAction},
		{"Consume", func(ctx context.Context, c api.LogClient) error {
			_, err := c.Consume(ctx, &api.ConsumeRequest{Offset: 0})
			return err
		}, ConsumeAction},
		{"ConsumeStream", func(ctx context.Context, c api.LogClient) error {
			stream, err := c.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
			if err != nil {
				return err
			}
			for range 3 {
				if _, err := stream.Recv(); err != nil {
					return err
				}
			}
			return nil
		}, ConsumeAction},
		{"GetServers", func(ctx context.Context, c api.LogClient) error {
			_, err := c.GetServers(ctx, &api.GetServersRequest{})
			return err
		}, ""},
	}
	for _, deny := range []codes.Code{codes.OK, codes.PermissionDenied, codes.Unauthenticated} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/deny=%s", tt.name, deny), func(t *testing.T) {
				cfg := testConfig(t)
				commitLog := newTestLog(t)
				for range 3 {
					_, err := commitLog.AppendBatch(t.Context(), api.DefaultTopic, []*api.Record{record})
					require.NoError(t, err)
				}
				cfg.CommitLog = commitLog
				authorizer := &recordingAuthorizer{deny: deny}
				cfg.Authorizer = authorizer
				ts := newTestServer(t, cfg, subjectInterceptors("alice")...)

				err := tt.call(testContext(t), ts.client)

				var want []authCall
				if tt.wantAction != "" {
					want = []authCall{{subject: "alice", object: api.DefaultTopic, action: tt.wantAction}}
				}
				require.Equalf(t, want, authorizer.Calls(), "Authorize calls = %v, want %v", authorizer.Calls(), want)
				if tt.wantAction == "" || deny == codes.OK {
					require.NoError(t, err)
					return
				}
				st := requireCode(t, err, deny)
				require.Contains(t, st.Message(), "alice may not "+tt.wantAction)
			})
		}
	}
}

// TestGetServers: without a ServerGetter the server names itself; with one,
// it answers what the getter says.
func TestGetServers(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		ts := newTestServer(t, testConfig(t))
		res, err := ts.client.GetServers(testContext(t), &api.GetServersRequest{})
		require.NoError(t, err)
		require.Len(t, res.Servers, 1)
		got := res.Servers[0]
		require.Equal(t, "node-0", got.Id)
		require.Equal(t, "127.0.0.1:8400", got.RpcAddr)
		require.True(t, got.IsLeader)
	})
	t.Run("from ServerGetter", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.ServerGetter = serverGetterFunc(func() ([]*api.Server, error) {
			return []*api.Server{{Id: "a", RpcAddr: "a:1", IsLeader: true}, {Id: "b", RpcAddr: "b:1"}}, nil
		})
		ts := newTestServer(t, cfg)
		res, err := ts.client.GetServers(testContext(t), &api.GetServersRequest{})
		require.NoError(t, err)
		require.Len(t, res.Servers, 2)
		require.Equal(t, "b", res.Servers[1].Id)
	})
	t.Run("ServerGetter fails", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.ServerGetter = serverGetterFunc(func() ([]*api.Server, error) {
			return nil, errors.New("raft: secret detail")
		})
		ts := newTestServer(t, cfg)
		_, err := ts.client.GetServers(testContext(t), &api.GetServersRequest{})
		st := requireCode(t, err, codes.Internal)
		require.NotContains(t, st.Message(), "secret")
	})
}

type serverGetterFunc func() ([]*api.Server, error)

func (f serverGetterFunc) GetServers() ([]*api.Server, error) { return f() }

// TestMaxRecvMsgSize: the gRPC receive limit follows MaxBatchBytes, so a
// full batch passes although it is over gRPC's default 4 MiB, and a batch
// over the limit gets the server's own InvalidArgument.
func TestMaxRecvMsgSize(t *testing.T) {
	ts := newTestServer(t, testConfig(t))
	ctx := testContext(t)
	full := make([]*api.Record, DefaultMaxBatchBytes/DefaultMaxRecordBytes)
	for i := range full {
		full[i] = &api.Record{Value: make([]byte, DefaultMaxRecordBytes)}
	}
	res, err := ts.client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: full})
	require.NoErrorf(t, err, "ProduceBatch of %d bytes = %v, want success", DefaultMaxBatchBytes, err)
	require.Equal(t, uint64(len(full)), res.Count)

	over := append(full, &api.Record{Value: []byte("1")})
	_, err = ts.client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: over})
	st := requireCode(t, err, codes.InvalidArgument)
	require.Contains(t, st.Message(), "over the 4194304-byte limit")
}

// TestReflection: grpcurl can list the service.
func TestReflection(t *testing.T) {
	ts := newTestServer(t, testConfig(t))
	stream, err := reflectionpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(testContext(t))
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}))
	res, err := stream.Recv()
	require.NoError(t, err)
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	require.Containsf(t, names, "log.v1.Log", "reflection lists %v, want log.v1.Log among them", names)
	require.NoError(t, stream.CloseSend())
}

// TestConfigValidation: New refuses a Config it cannot run, naming the field.
func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no CommitLog", func(c *Config) { c.CommitLog = nil }, "CommitLog"},
		{"no Authorizer", func(c *Config) { c.Authorizer = nil }, "Authorizer"},
		{"negative MaxRecordBytes", func(c *Config) { c.MaxRecordBytes = -1 }, "MaxRecordBytes"},
		{"negative MaxBatchRecords", func(c *Config) { c.MaxBatchRecords = -1 }, "MaxBatchRecords"},
		{"negative MaxBatchBytes", func(c *Config) { c.MaxBatchBytes = -1 }, "MaxBatchBytes"},
		{"negative ProduceStreamWindow", func(c *Config) { c.ProduceStreamWindow = -1 }, "ProduceStreamWindow"},
		{"MaxBatchBytes below MaxRecordBytes", func(c *Config) { c.MaxRecordBytes, c.MaxBatchBytes = 10, 5 }, "MaxBatchBytes"},
		{"negative MaxConsumeRecords", func(c *Config) { c.MaxConsumeRecords = -1 }, "MaxConsumeRecords"},
		{"negative MaxConsumeBytes", func(c *Config) { c.MaxConsumeBytes = -1 }, "MaxConsumeBytes"},
		{"MaxConsumeBytes past the limit", func(c *Config) { c.MaxConsumeBytes = MaxConsumeLimit + 1 }, "MaxConsumeBytes"},
		{"MaxConsumeRecords past the limit", func(c *Config) { c.MaxConsumeRecords = MaxConsumeLimit + 1 }, "MaxConsumeRecords"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.modify(cfg)
			_, err := NewGRPCServer(cfg)
			require.ErrorContains(t, err, tt.want)
			_, err = NewHTTPHandler(cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := NewGRPCServer(nil)
	require.Error(t, err)
}

// TestRecoverPanic: a handler's panic becomes Internal without its text.
func TestRecoverPanic(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommitLog = servertest.NewLog(servertest.WithReadHook(func(context.Context, uint64) error { panic("boom") }))
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	_, err := ts.client.Consume(ctx, &api.ConsumeRequest{})
	st := requireCode(t, err, codes.Internal)
	require.False(t, strings.Contains(st.Message(), "boom"), "message %q leaks the panic", st.Message())

	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	requireCode(t, err, codes.Internal)
}
