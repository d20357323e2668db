package server

import (
	"context"
	"fmt"
	"slices"

	"go.uber.org/zap"

	api "github.com/proglog/proglog/api/v1"
)

// CommitLog is what the server needs from a log of named topics. The
// Raft-replicated distlog.DistributedLog satisfies it through the agent's
// adapter, and servertest.Log is an in-memory one for tests. Implementations
// must be safe for concurrent use.
//
// Every topic argument is a valid topic name (the server maps an empty
// request topic to api.DefaultTopic and refuses invalid names before it calls
// the log). A topic the log does not have is an api.TopicNotFoundError.
type CommitLog interface {
	// AppendBatch appends records to topic contiguously, in order, as one
	// unit, and returns the offset of the first; record i gets first+i.
	// Offsets are per topic.
	AppendBatch(ctx context.Context, topic string, records []*api.Record) (first uint64, err error)
	// AppendProduced appends the produce calls batches to topic as one
	// unit, each call contiguous, in order, and returns each call's
	// outcome. A call with a producer id is idempotent (see
	// api.ProducerBatch): a retry of a call appended before gets the
	// original offsets (Duplicate) and appends nothing; a sequence the
	// producer's state refuses is an api.SequenceError in that call's
	// result, the other calls unaffected. An error that refuses every call
	// is returned as the error.
	AppendProduced(ctx context.Context, topic string, batches []api.ProducerBatch) ([]api.ProducerResult, error)
	// StartAppend starts appending the produce calls batches to topic as
	// AppendProduced does, and returns without waiting for the outcome.
	// Appends started one after the other by one goroutine are appended in
	// that order, so ProduceStream keeps many in flight and still answers
	// in order (the replicated log puts what queued up into one Raft
	// entry). An error that refuses the append before it starts is
	// returned at once.
	StartAppend(ctx context.Context, topic string, batches []api.ProducerBatch) (api.AppendWaiter, error)
	// Read returns the record at offset in topic, or
	// api.ErrOffsetOutOfRange when the topic does not hold it. The caller
	// must not modify the returned record.
	Read(ctx context.Context, topic string, offset uint64) (*api.Record, error)
	// ReadBatch returns the records of topic from offset on, in order at
	// consecutive offsets: at most maxRecords of them (at least one), and
	// no more than maxBytes of values in all, except that the first comes
	// whatever its size. It returns what the log holds without waiting to
	// fill the batch, and api.ErrOffsetOutOfRange (as Read) when it does
	// not hold even offset. The caller must not modify the records.
	ReadBatch(ctx context.Context, topic string, offset uint64, maxRecords int, maxBytes uint64) ([]*api.Record, error)
	// Appended returns a channel that is closed at topic's next change (an
	// append, or its deletion). A reader waiting for new records takes it
	// BEFORE a read that came back out of range, so that an append between
	// the read and the wait is not missed. For a topic the log does not
	// have it returns a channel that is already closed, so that the reader
	// reads again and meets the TopicNotFoundError.
	Appended(topic string) <-chan struct{}
	// CreateTopic creates topic name with config (nil: all defaults). It is
	// idempotent: creating a topic that exists with the same config
	// succeeds; with another config it is an api.TopicExistsError.
	CreateTopic(ctx context.Context, name string, config *api.TopicConfig) error
	// AlterTopic sets topic name's changeable configuration to config's
	// (retention_bytes, retention_age_ms, segment_age_ms; the other fields
	// are ignored).
	AlterTopic(ctx context.Context, name string, config *api.TopicConfig) error
	// DeleteTopic deletes topic name and its records.
	DeleteTopic(ctx context.Context, name string) error
	// ListTopics describes every topic, sorted by name.
	ListTopics(ctx context.Context) ([]*api.TopicInfo, error)
	// DescribeTopic describes topic name.
	DescribeTopic(ctx context.Context, name string) (*api.TopicInfo, error)
	// CommitOffset commits group's offset in topic (the next record the
	// group will process) and returns the committed offset after the call:
	// monotonic unless reset; past the topic's end is
	// api.ErrOffsetOutOfRange.
	CommitOffset(ctx context.Context, group, topic string, offset uint64, reset bool) (uint64, error)
	// FetchOffset returns group's committed offset in topic, or
	// api.ErrGroupNotFound.
	FetchOffset(ctx context.Context, group, topic string) (uint64, error)
	// ListGroups describes every consumer group, sorted by name.
	ListGroups(ctx context.Context) ([]*api.GroupInfo, error)
	// DescribeGroup describes group, or returns api.ErrGroupNotFound.
	DescribeGroup(ctx context.Context, group string) (*api.GroupInfo, error)
}

// Authorizer decides whether subject may perform action on object. It returns
// nil when allowed and a gRPC status error (codes.PermissionDenied, or
// codes.Unauthenticated for an empty subject) when not.
type Authorizer interface {
	Authorize(subject, object, action string) error
}

// ServerGetter lists the cluster's servers and which one leads.
type ServerGetter interface {
	GetServers() ([]*api.Server, error)
}

// The actions the server asks its Authorizer about. The object of every
// check is a topic name (the default topic, "default", for requests that name
// none), so a policy can grant a subject some topics and not others; policies
// name topics with globs (test/model.conf matches objects with globMatch:
// "*" is every topic, "orders.*" every topic whose name starts "orders.").
const (
	// ProduceAction guards Produce, ProduceBatch and ProduceStream on a
	// topic (and POST on the HTTP API).
	ProduceAction = "produce"
	// ConsumeAction guards Consume, ConsumeStream and DescribeTopic on a
	// topic (and GET on the HTTP API); ListTopics lists only the topics the
	// subject may consume.
	ConsumeAction = "consume"
	// AdminAction guards CreateTopic, AlterTopic and DeleteTopic on a topic (HTTP PUT
	// and DELETE /topics/{name}). It does not imply produce or consume.
	AdminAction = "admin"
)

// Defaults for the zero values of Config's limits.
const (
	// DefaultMaxRecordBytes is the default largest record value: 1 MiB.
	DefaultMaxRecordBytes = 1 << 20
	// DefaultMaxBatchRecords is the default largest number of records in one
	// ProduceBatch call.
	DefaultMaxBatchRecords = 1000
	// DefaultMaxBatchBytes is the default largest sum of record values in one
	// ProduceBatch call: 4 MiB (raised to MaxRecordBytes when that is larger).
	DefaultMaxBatchBytes = 4 << 20
	// DefaultProduceStreamWindow is the default number of ProduceStream
	// records in flight (started and not answered), and of requests read
	// ahead of them. One stream's throughput is at most its records in
	// flight per Raft round trip, so the client's window, not this one, is
	// what limits it up to 1024 records; ProduceStreamWindowBytes bounds
	// the memory.
	DefaultProduceStreamWindow = 1024
	// DefaultProduceStreamWindowBytes is the default largest sum of record
	// values one ProduceStream holds (read ahead, in flight): 8 MiB, two
	// default batches, one in Raft while the next one gathers.
	DefaultProduceStreamWindowBytes = 8 << 20
	// DefaultMaxConsumeRecords is the default largest number of records
	// in one batched ConsumeStream (or Consume) response.
	DefaultMaxConsumeRecords = 10000
	// DefaultMaxConsumeBytes is the default largest sum of record values in
	// one batched response: 1 MiB, so that a response with its framing
	// stays well under the 4 MiB a gRPC client receives by default.
	DefaultMaxConsumeBytes = 1 << 20
)

// perRecordOverhead bounds the protobuf framing of one Record inside a
// request: the field tag and length of the embedded message, and the tags and
// varints of its value length, offset, term and type fields (about 40 bytes at
// most), rounded up.
const perRecordOverhead = 64

// messageOverhead is slack for a request's own framing beyond its records.
const messageOverhead = 1024

// MaxConsumeLimit is the most Config.MaxConsumeRecords and MaxConsumeBytes
// may be: 16 MiB of
// values plus the framing of 16M records (perRecordOverhead each, 1 GiB)
// still fits a gRPC message (at most 2 GiB). Useful limits are far lower:
// clients receive 4 MiB messages by default.
const MaxConsumeLimit = 1 << 24

// Config configures the gRPC service and the HTTP handler. The zero value of
// every optional field selects its default; NewGRPCServer and NewHTTPHandler
// copy the Config, so changing it afterwards has no effect.
type Config struct {
	// CommitLog is the log the server appends to and reads from. Required.
	CommitLog CommitLog
	// Authorizer checks every call with the topic as the object:
	// (subject, topic, "produce") for Produce, ProduceBatch, ProduceStream
	// and HTTP POST; (subject, topic, "consume") for Consume,
	// ConsumeStream, DescribeTopic and HTTP GET; (subject, topic, "admin")
	// for CreateTopic, DeleteTopic and HTTP PUT/DELETE /topics/{name};
	// ListTopics keeps the topics the subject may consume. The subject is
	// auth.Subject of the call's context ("" when no authentication
	// interceptor set one).
	// Required: use an allow-all Authorizer to run without access control.
	Authorizer Authorizer
	// ServerGetter answers GetServers. Nil: GetServers returns this server
	// alone, as leader, named by ID and RPCAddr.
	ServerGetter ServerGetter
	// ID is this server's name in GetServers when ServerGetter is nil.
	ID string
	// RPCAddr is this server's gRPC address in GetServers when ServerGetter
	// is nil.
	RPCAddr string

	// MaxRecordBytes is the largest record value, in bytes, that Produce,
	// ProduceBatch, ProduceStream and HTTP POST accept; larger values get
	// codes.InvalidArgument (HTTP 413). Default DefaultMaxRecordBytes (1 MiB).
	MaxRecordBytes int
	// MaxBatchRecords is the largest number of records in one ProduceBatch.
	// Default DefaultMaxBatchRecords (1000).
	MaxBatchRecords int
	// MaxBatchBytes is the largest sum of record value sizes, in bytes, in one
	// ProduceBatch. Default DefaultMaxBatchBytes (4 MiB), or MaxRecordBytes
	// when that is larger. The gRPC receive limit is set from it, so a request
	// that cannot possibly be valid is refused by gRPC itself
	// (codes.ResourceExhausted) before it is decoded.
	MaxBatchBytes int
	// ProduceStreamWindow is how many records one ProduceStream keeps in
	// flight (appends started and not yet answered), and how many more
	// requests the server reads ahead of them; requests that queued up are
	// appended together as one batch. Default DefaultProduceStreamWindow
	// (1024).
	ProduceStreamWindow int
	// ProduceStreamWindowBytes bounds the record values, in bytes, one
	// ProduceStream holds: read ahead and in flight. The server stops
	// reading while the stream holds this much, and gRPC flow control then
	// holds the client back; a request larger than the bound is still
	// read when the stream holds nothing else. Default
	// DefaultProduceStreamWindowBytes (8 MiB).
	ProduceStreamWindowBytes int
	// MaxConsumeRecords is the most records one batched ConsumeStream or
	// Consume response carries (a request's max_records above it gets
	// it). Default DefaultMaxConsumeRecords (10000). A response is its
	// record values plus at most about 20 bytes of framing per record, so
	// the defaults keep it under 1.3 MiB; clients receive 4 MiB by
	// default.
	MaxConsumeRecords int
	// MaxConsumeBytes is the most bytes of record values, in all, one
	// batched response carries (a request's max_bytes above it, or 0, gets
	// it); a single record larger than it is sent alone, as an unbatched
	// stream sends it. A ConsumeStream holds one response at a time and
	// stream.Send blocks while the client's flow-control window is full,
	// so a slow consumer costs the server about this much per stream.
	// Default DefaultMaxConsumeBytes (1 MiB).
	MaxConsumeBytes int

	// Stopping, when closed, ends every open stream so that
	// grpc.Server.GracefulStop can return: a ConsumeStream returns
	// codes.Unavailable, and a ProduceStream answers the append in progress
	// and then returns codes.Unavailable (every request answered was
	// appended; none after it was). Close it just before GracefulStop (see
	// the GracefulStop function). Nil: streams end only when their clients
	// end them or when grpc.Server.Stop is called.
	Stopping <-chan struct{}

	// Logger receives the server's logs. Default zap.NewNop().
	Logger *zap.Logger
}

// clientView is the boundary where records leave the server: the CommitLog's
// Read answers with a record holding only what a client owns, its value and
// offset. Whatever else a log keeps in a record (the replication layer's
// term and type) never reaches the wire, so a client comparing a
// record it consumed with the one it produced sees the same record.
type clientView struct {
	CommitLog
}

// Read returns a fresh record with the log record's value and offset.
func (v clientView) Read(ctx context.Context, topic string, offset uint64) (*api.Record, error) {
	record, err := v.CommitLog.Read(ctx, topic, offset)
	if err != nil || record == nil {
		return record, err
	}
	return &api.Record{Value: record.GetValue(), Offset: record.GetOffset()}, nil
}

// ReadBatch returns records with the log records' values and offsets only:
// the log's own when they hold nothing else (distlog's do: a batch is
// passed on without a copy), fresh ones otherwise.
func (v clientView) ReadBatch(ctx context.Context, topic string, offset uint64, maxRecords int, maxBytes uint64) ([]*api.Record, error) {
	records, err := v.CommitLog.ReadBatch(ctx, topic, offset, maxRecords, maxBytes)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(records, hasMoreThanClientView) {
		return records, nil
	}
	// One allocation for the batch's views rather than one per record.
	views := make([]api.Record, len(records))
	out := make([]*api.Record, len(records))
	for k, record := range records {
		views[k].Value, views[k].Offset = record.GetValue(), record.GetOffset()
		out[k] = &views[k]
	}
	return out, nil
}

// hasMoreThanClientView reports whether record holds anything but its value
// and offset: bookkeeping fields, or fields this release does not know.
func hasMoreThanClientView(record *api.Record) bool {
	return record.GetTerm() != 0 || record.GetType() != 0 || len(record.ProtoReflect().GetUnknown()) != 0
}

// withDefaults validates c and returns a copy with every default filled in.
func (c *Config) withDefaults() (Config, error) {
	if c == nil {
		return Config{}, fmt.Errorf("server: nil Config")
	}
	cfg := *c
	if cfg.CommitLog == nil {
		return Config{}, fmt.Errorf("server: Config.CommitLog is required")
	}
	if cfg.Authorizer == nil {
		return Config{}, fmt.Errorf("server: Config.Authorizer is required (use an allow-all Authorizer to disable access control)")
	}
	if cfg.MaxRecordBytes < 0 {
		return Config{}, fmt.Errorf("server: Config.MaxRecordBytes = %d, want >= 0", cfg.MaxRecordBytes)
	}
	if cfg.MaxBatchRecords < 0 {
		return Config{}, fmt.Errorf("server: Config.MaxBatchRecords = %d, want >= 0", cfg.MaxBatchRecords)
	}
	if cfg.MaxBatchBytes < 0 {
		return Config{}, fmt.Errorf("server: Config.MaxBatchBytes = %d, want >= 0", cfg.MaxBatchBytes)
	}
	if cfg.ProduceStreamWindow < 0 {
		return Config{}, fmt.Errorf("server: Config.ProduceStreamWindow = %d, want >= 0", cfg.ProduceStreamWindow)
	}
	if cfg.ProduceStreamWindowBytes < 0 {
		return Config{}, fmt.Errorf("server: Config.ProduceStreamWindowBytes = %d, want >= 0", cfg.ProduceStreamWindowBytes)
	}
	if cfg.MaxConsumeRecords < 0 {
		return Config{}, fmt.Errorf("server: Config.MaxConsumeRecords = %d, want >= 0", cfg.MaxConsumeRecords)
	}
	if cfg.MaxConsumeBytes < 0 {
		return Config{}, fmt.Errorf("server: Config.MaxConsumeBytes = %d, want >= 0", cfg.MaxConsumeBytes)
	}
	if cfg.MaxConsumeRecords > MaxConsumeLimit || cfg.MaxConsumeBytes > MaxConsumeLimit {
		return Config{}, fmt.Errorf("server: Config.MaxConsumeRecords = %d, MaxConsumeBytes = %d: a batched response must fit a gRPC message (at most %d each)",
			cfg.MaxConsumeRecords, cfg.MaxConsumeBytes, MaxConsumeLimit)
	}
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if cfg.MaxBatchRecords == 0 {
		cfg.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = max(DefaultMaxBatchBytes, cfg.MaxRecordBytes)
	}
	if cfg.MaxBatchBytes < cfg.MaxRecordBytes {
		return Config{}, fmt.Errorf("server: Config.MaxBatchBytes = %d is below MaxRecordBytes = %d",
			cfg.MaxBatchBytes, cfg.MaxRecordBytes)
	}
	if cfg.ProduceStreamWindow == 0 {
		cfg.ProduceStreamWindow = DefaultProduceStreamWindow
	}
	if cfg.ProduceStreamWindowBytes == 0 {
		cfg.ProduceStreamWindowBytes = DefaultProduceStreamWindowBytes
	}
	if cfg.MaxConsumeRecords == 0 {
		cfg.MaxConsumeRecords = DefaultMaxConsumeRecords
	}
	if cfg.MaxConsumeBytes == 0 {
		cfg.MaxConsumeBytes = DefaultMaxConsumeBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	// Every record the server sends (Consume, ConsumeStream, HTTP GET) comes
	// through this one boundary.
	cfg.CommitLog = clientView{cfg.CommitLog}
	// Messages must fit in an int on 32-bit platforms too.
	if cfg.maxRecvMsgSize() < 0 || cfg.maxRecvMsgSize() > 1<<31-1 {
		return Config{}, fmt.Errorf("server: Config.MaxBatchBytes = %d with MaxBatchRecords = %d exceeds the 2 GiB gRPC message limit",
			cfg.MaxBatchBytes, cfg.MaxBatchRecords)
	}
	return cfg, nil
}

// maxRecvMsgSize is the gRPC receive limit that matches the configured
// limits: the largest valid ProduceBatchRequest (or ProduceRequest) plus its
// framing. Anything larger cannot be valid.
func (c *Config) maxRecvMsgSize() int {
	return c.MaxBatchBytes + c.MaxBatchRecords*perRecordOverhead + messageOverhead
}
