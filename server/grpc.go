package server

import (
	"context"
	"fmt"
	"runtime/debug"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/auth"
)

// NewGRPCServer returns a gRPC server serving the Log service on cfg's
// CommitLog, with server reflection registered (so grpcurl can list and call
// it), the receive limit set to match cfg's record and batch limits, and a
// recovery interceptor that turns a handler's panic into codes.Internal with a
// generic message (the panic and its stack go to the log).
//
// opts are applied after the server's own options: authentication
// interceptors (server/auth) go here and run inside the recovery interceptor;
// a grpc.MaxRecvMsgSize here overrides the computed one.
//
// The caller owns the server: Serve it on a listener, and stop it with the
// GracefulStop function after closing cfg.Stopping.
func NewGRPCServer(cfg *Config, opts ...grpc.ServerOption) (*grpc.Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	svc := &logService{cfg: c, logger: c.Logger.Named("grpc")}
	serverOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(c.maxRecvMsgSize()),
		grpc.WriteBufferSize(writeBufferBytes),
		grpc.ChainUnaryInterceptor(svc.recoverUnary),
		grpc.ChainStreamInterceptor(svc.recoverStream),
	}, opts...)
	srv := grpc.NewServer(serverOpts...)
	api.RegisterLogServer(srv, svc)
	reflection.Register(srv)
	return srv, nil
}

// writeBufferBytes is how much a connection's transport gathers before a
// write to the socket (gRPC's default is 32 KiB). Batched ConsumeStream
// responses are up to MaxConsumeBytes (1 MiB) each: 256 KiB writes make
// an eighth of the syscalls and TLS record batches. gRPC shares write
// buffers between connections and releases them after each flush, so an
// idle connection holds none.
const writeBufferBytes = 256 << 10

// GracefulStop stops srv gracefully, but no longer than ctx allows: it calls
// srv.GracefulStop, and if ctx ends first it calls srv.Stop, which closes every
// connection and cancels every call still running, and returns ctx.Err().
//
// Close the Config.Stopping channel first, so that open streams end by
// themselves; otherwise GracefulStop waits for clients to end them. A
// ConsumeStream blocked sending to a client that stopped reading (gRPC flow
// control) notices Stopping only once that send completes, which is what
// ctx bounds.
func GracefulStop(ctx context.Context, srv *grpc.Server) error {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		srv.GracefulStop()
	}()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		srv.Stop()
		// Stop ends every connection, so GracefulStop returns promptly.
		<-stopped
		return fmt.Errorf("server: graceful stop forced: %w", ctx.Err())
	}
}

// logService implements api.LogServer on a CommitLog.
type logService struct {
	api.UnimplementedLogServer

	cfg    Config
	logger *zap.Logger
}

var _ api.LogServer = (*logService)(nil)

// Produce appends one record to the request's topic and returns its offset.
func (s *logService) Produce(ctx context.Context, req *api.ProduceRequest) (*api.ProduceResponse, error) {
	topic, err := s.authorizeTopic(ctx, req.GetTopic(), ProduceAction)
	if err != nil {
		return nil, s.status(err)
	}
	record, err := s.checkRecord(req.GetRecord())
	if err != nil {
		return nil, s.status(err)
	}
	if req.GetProducerId() != 0 {
		result, err := s.appendProduced(ctx, topic, req.GetProducerId(), req.GetSequence(), []*api.Record{record})
		if err != nil {
			return nil, s.status(err)
		}
		return &api.ProduceResponse{Offset: result.First, Duplicate: result.Duplicate}, nil
	}
	offset, err := s.cfg.CommitLog.AppendBatch(ctx, topic, []*api.Record{record})
	if err != nil {
		return nil, s.status(err)
	}
	return &api.ProduceResponse{Offset: offset}, nil
}

// appendProduced appends one idempotent produce call and returns its
// outcome; a refused call is its error.
func (s *logService) appendProduced(ctx context.Context, topic string, producer, sequence uint64, records []*api.Record) (api.ProducerResult, error) {
	results, err := s.cfg.CommitLog.AppendProduced(ctx, topic, []api.ProducerBatch{{ProducerID: producer, Sequence: sequence, Records: records}})
	if err != nil {
		return api.ProducerResult{}, err
	}
	if len(results) != 1 {
		return api.ProducerResult{}, fmt.Errorf("server: %d outcomes for one call", len(results))
	}
	return results[0], results[0].Err
}

// ProduceBatch appends every record of the request to its topic
// contiguously, as one unit.
func (s *logService) ProduceBatch(ctx context.Context, req *api.ProduceBatchRequest) (*api.ProduceBatchResponse, error) {
	topic, err := s.authorizeTopic(ctx, req.GetTopic(), ProduceAction)
	if err != nil {
		return nil, s.status(err)
	}
	records, err := s.checkBatch(req.GetRecords())
	if err != nil {
		return nil, s.status(err)
	}
	if req.GetProducerId() != 0 {
		result, err := s.appendProduced(ctx, topic, req.GetProducerId(), req.GetSequence(), records)
		if err != nil {
			return nil, s.status(err)
		}
		return &api.ProduceBatchResponse{FirstOffset: result.First, Count: result.Count, Duplicate: result.Duplicate}, nil
	}
	first, err := s.cfg.CommitLog.AppendBatch(ctx, topic, records)
	if err != nil {
		return nil, s.status(err)
	}
	return &api.ProduceBatchResponse{FirstOffset: first, Count: uint64(len(records))}, nil
}

// Consume reads the record at the requested offset of the request's topic;
// with max_records, the records from it on that the log holds, within the
// request's limits capped by the server's (see ConsumeStream).
func (s *logService) Consume(ctx context.Context, req *api.ConsumeRequest) (*api.ConsumeResponse, error) {
	topic, err := s.authorizeTopic(ctx, req.GetTopic(), ConsumeAction)
	if err != nil {
		return nil, s.status(err)
	}
	limits, err := s.consumeLimits(req)
	if err != nil {
		return nil, s.status(err)
	}
	if limits.batched {
		records, err := s.readBatch(ctx, topic, req.GetOffset(), limits)
		if err != nil {
			return nil, s.status(err)
		}
		return &api.ConsumeResponse{Records: records}, nil
	}
	record, err := s.cfg.CommitLog.Read(ctx, topic, req.GetOffset())
	if err != nil {
		return nil, s.status(err)
	}
	return &api.ConsumeResponse{Record: record}, nil
}

// GetServers lists the cluster's servers. Any caller the authentication
// interceptors let through may ask; there is no action to authorize.
func (s *logService) GetServers(ctx context.Context, _ *api.GetServersRequest) (*api.GetServersResponse, error) {
	if s.cfg.ServerGetter == nil {
		return &api.GetServersResponse{Servers: []*api.Server{
			{Id: s.cfg.ID, RpcAddr: s.cfg.RPCAddr, IsLeader: true},
		}}, nil
	}
	servers, err := s.cfg.ServerGetter.GetServers()
	if err != nil {
		return nil, s.status(err)
	}
	return &api.GetServersResponse{Servers: servers}, nil
}

// authorizeTopic reads a request's topic (empty: api.DefaultTopic), checks
// its name, and asks the Authorizer whether the call's subject may perform
// action on it. It returns the topic to use.
func (s *logService) authorizeTopic(ctx context.Context, requested, action string) (string, error) {
	return authorizeTopic(ctx, s.cfg.Authorizer, requested, action)
}

// authorizeTopic is shared by the gRPC and HTTP paths. The name is checked
// first, so that a policy never sees an object that is not a topic name.
func authorizeTopic(ctx context.Context, authorizer Authorizer, requested, action string) (string, error) {
	topic := api.TopicOrDefault(requested)
	if err := api.ValidateTopicName(topic); err != nil {
		return "", err
	}
	subject, _ := auth.Subject(ctx)
	if err := authorizer.Authorize(subject, topic, action); err != nil {
		return "", err
	}
	return topic, nil
}

// checkRecord validates a record a client sent and returns the record to
// append: a fresh one holding only the value, so that an offset, term or type
// the client set never reaches the log.
func (s *logService) checkRecord(record *api.Record) (*api.Record, error) {
	return checkRecord(record, s.cfg.MaxRecordBytes)
}

func checkRecord(record *api.Record, maxBytes int) (*api.Record, error) {
	if record == nil {
		return nil, api.ErrNoRecord
	}
	if n := len(record.GetValue()); n > maxBytes {
		return nil, fmt.Errorf("%w: value is %d bytes, over the %d-byte limit", api.ErrRecordTooLarge, n, maxBytes)
	}
	return &api.Record{Value: record.GetValue()}, nil
}

// checkBatch validates a ProduceBatch's records and returns the records to
// append.
func (s *logService) checkBatch(records []*api.Record) ([]*api.Record, error) {
	if len(records) == 0 {
		return nil, api.ErrEmptyBatch
	}
	if len(records) > s.cfg.MaxBatchRecords {
		return nil, fmt.Errorf("%w: %d records, over the limit of %d", api.ErrBatchTooLarge, len(records), s.cfg.MaxBatchRecords)
	}
	checked := make([]*api.Record, len(records))
	total := 0
	for i, record := range records {
		r, err := s.checkRecord(record)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		total += len(r.Value)
		checked[i] = r
	}
	if total > s.cfg.MaxBatchBytes {
		return nil, fmt.Errorf("%w: values total %d bytes, over the %d-byte limit", api.ErrBatchTooLarge, total, s.cfg.MaxBatchBytes)
	}
	return checked, nil
}

// status turns err into the gRPC status error a client sees.
func (s *logService) status(err error) error {
	return toStatus(s.logger, err)
}

// recoverUnary turns a panic below it into codes.Internal: a bug in one call
// must not take the node down, and the panic's text must not reach a client.
func (s *logService) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logPanic(info.FullMethod, r)
			resp, err = nil, status.Error(codes.Internal, internalMessage)
		}
	}()
	return handler(ctx, req)
}

// recoverStream is recoverUnary for streaming calls.
func (s *logService) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logPanic(info.FullMethod, r)
			err = status.Error(codes.Internal, internalMessage)
		}
	}()
	return handler(srv, ss)
}

func (s *logService) logPanic(method string, recovered any) {
	s.logger.Error("panic in handler",
		zap.String("method", method),
		zap.Any("panic", recovered),
		zap.ByteString("stack", debug.Stack()))
}
