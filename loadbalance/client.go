package loadbalance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// Default values of Config fields.
const (
	DefaultRetryTimeout        = 10 * time.Second
	DefaultInitialBackoff      = 50 * time.Millisecond
	DefaultMaxBackoff          = time.Second
	DefaultStreamResumeTimeout = 30 * time.Second
	// DefaultAttemptTimeout is the default Config.AttemptTimeout: well above
	// a commit on a loaded leader (milliseconds) and a follower's wait for
	// a record not yet applied there (the server's ReadWaitTimeout, 2 s),
	// and half of DefaultRetryTimeout, so a call whose first attempt hangs
	// still has time for another.
	DefaultAttemptTimeout = 5 * time.Second
	// DefaultReconnectMaxBackoff is the default Config.ReconnectMaxBackoff.
	DefaultReconnectMaxBackoff = 500 * time.Millisecond
	// reconnectBaseDelay is the wait before redialling a server after the
	// first failed connection; each further failure multiplies it by
	// reconnectMultiplier, up to Config.ReconnectMaxBackoff.
	reconnectBaseDelay  = 100 * time.Millisecond
	reconnectMultiplier = 1.6
	reconnectJitter     = 0.2
)

// Config configures a Client. Seeds and one of TLSConfig or Insecure are
// required; every other field has a default.
type Config struct {
	// Seeds are host:port RPC addresses of some cluster members. The client
	// learns the rest with GetServers; one live seed is enough to start.
	Seeds []string
	// TLSConfig is the client's TLS configuration (CA, client certificate
	// for mTLS). Required unless Insecure is set.
	TLSConfig *tls.Config
	// Insecure dials without TLS. Only for tests and local experiments; it
	// must be set explicitly so a forgotten TLSConfig is an error, not a
	// plaintext connection.
	Insecure bool
	// ResolveInterval is how often the resolver refreshes the server list.
	// Default DefaultResolveInterval (1 s).
	ResolveInterval time.Duration
	// ResolveTimeout bounds one GetServers call made by the resolver.
	// Default DefaultResolveTimeout (2 s).
	ResolveTimeout time.Duration
	// RetryTimeout bounds Produce, ProduceBatch, Consume and GetServers,
	// retries included, when the caller's context has no deadline. Default
	// DefaultRetryTimeout (10 s).
	RetryTimeout time.Duration
	// InitialBackoff is the wait before the first retry; each retry doubles
	// it up to MaxBackoff, with jitter. Default DefaultInitialBackoff (50 ms).
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between retries. Default DefaultMaxBackoff
	// (1 s).
	MaxBackoff time.Duration
	// StreamResumeTimeout is how long ConsumeStream keeps trying to reopen
	// a broken stream before it gives up; a stream that opened, even one
	// that then waited for records without any, stops the clock. Default
	// DefaultStreamResumeTimeout (30 s).
	StreamResumeTimeout time.Duration
	// AttemptTimeout bounds one attempt of Produce, ProduceBatch, Consume
	// or GetServers (the caller's deadline wins when it is sooner), and
	// the opening of each ConsumeStream stream (until the server's
	// headers). An attempt that gets no answer in time, as from a paused
	// server whose connection is still open, is retried like one that
	// failed with codes.Unavailable, on the server the resolver then
	// names. It must exceed the longest a healthy server may take: a
	// follower asked for a record it does not hold yet waits up to the
	// distributed log's ReadWaitTimeout (2 s) before answering. Default
	// DefaultAttemptTimeout (5 s).
	AttemptTimeout time.Duration
	// KeepaliveTime is how long a connection to a server may go without
	// receiving anything before the client pings the server, whether or
	// not calls are in flight. At least MinKeepaliveTime (10 s), the
	// least gRPC allows. Servers must accept pings this often: see
	// ServerKeepaliveOptions. Default DefaultKeepaliveTime (10 s).
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the client waits for anything from the
	// server after a ping before it closes the connection, failing its
	// calls and streams with codes.Unavailable (a ConsumeStream then
	// resumes elsewhere). A paused server is so found out within
	// KeepaliveTime + KeepaliveTimeout of going silent. Default
	// DefaultKeepaliveTimeout (5 s).
	KeepaliveTimeout time.Duration
	// ReconnectMaxBackoff caps the wait between two attempts to reconnect
	// to a server whose connection failed (gRPC's own cap is 120 s, which
	// kept a node that had been down for minutes unreachable long after it
	// returned). A server that comes back is connected to again within
	// about this long, plus 20% jitter; a server named leader while its
	// connection is failing is redialled at once. Dialling a server that
	// is down costs one refused connection per interval. Default
	// DefaultReconnectMaxBackoff (500 ms).
	ReconnectMaxBackoff time.Duration
	// FailFastWhenRefused, when positive, makes a call give up once this
	// long has passed without any server ever having answered this
	// client and every attempt failed because connections were refused,
	// instead of retrying until RetryTimeout: a command pointed at
	// addresses where nothing listens fails in about this long. A client
	// that reached the cluster once keeps retrying through a full outage.
	// Default 0: retry until RetryTimeout.
	FailFastWhenRefused time.Duration
	// NotIdempotent turns the idempotent producer off: Produce,
	// ProduceBatch and ProduceStream then send no producer id, and a write
	// retried after a lost answer may be appended twice. Default false:
	// every write carries a producer id and a sequence, and is appended
	// exactly once however often it is retried (within the cluster's
	// dedupe window; see Produce).
	NotIdempotent bool
	// NoCoalesce turns coalescing off: every Produce call is then one
	// Produce RPC of its own. Default false: concurrent Produce calls to a
	// topic that find CoalesceInFlight RPCs of it in flight queue, and
	// leave together as one ProduceBatch RPC (see Produce).
	NoCoalesce bool
	// CoalesceInFlight is how many Produce RPCs (lone calls or coalesced
	// batches) of one topic may be in flight at once before further calls
	// queue for the next batch. With 1, records are appended in the order
	// the calls were made; with more, batches in flight at once may be
	// appended in either order, as concurrent calls always may. More is
	// not faster against a proglog leader, which commits one Raft entry at
	// a time: a second batch in flight waits there for the next entry, and
	// the batches get smaller (64 writers on 2 loaded cores: 33.6k
	// records/s with 1, 34.0k with 2, medians of 12; before the leader
	// lingered for returning writers, 20-24k with 1 and 10-14k with 2).
	// Default DefaultCoalesceInFlight (1).
	CoalesceInFlight int
	// MaxCoalesceRecords is the most Produce calls one coalesced batch
	// holds; the rest wait for the next. Keep it at or below the server's
	// MaxBatchRecords: a batch the server refuses as too large is resent
	// one call at a time. Default DefaultMaxCoalesceRecords (1000, the
	// server's default).
	MaxCoalesceRecords int
	// MaxCoalesceBytes is the most bytes of record values one coalesced
	// batch holds (a single larger value goes alone). Keep it at or below
	// the server's MaxBatchBytes. Default DefaultMaxCoalesceBytes (4 MiB,
	// the server's default).
	MaxCoalesceBytes int
	// DialOptions are added to the client's connection, after the ones the
	// client sets itself. Default none.
	DialOptions []grpc.DialOption
	// Logger receives the client's and the resolver's logs. Default
	// zap.NewNop().
	Logger *zap.Logger
}

// withDefaults returns cfg with every zero field set to its default, the one
// place defaults are filled in.
func (cfg Config) withDefaults() Config {
	if cfg.ResolveInterval == 0 {
		cfg.ResolveInterval = DefaultResolveInterval
	}
	if cfg.ResolveTimeout == 0 {
		cfg.ResolveTimeout = DefaultResolveTimeout
	}
	if cfg.RetryTimeout == 0 {
		cfg.RetryTimeout = DefaultRetryTimeout
	}
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = DefaultInitialBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.StreamResumeTimeout == 0 {
		cfg.StreamResumeTimeout = DefaultStreamResumeTimeout
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.KeepaliveTime == 0 {
		cfg.KeepaliveTime = DefaultKeepaliveTime
	}
	if cfg.KeepaliveTimeout == 0 {
		cfg.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if cfg.ReconnectMaxBackoff == 0 {
		cfg.ReconnectMaxBackoff = DefaultReconnectMaxBackoff
	}
	if cfg.CoalesceInFlight == 0 {
		cfg.CoalesceInFlight = DefaultCoalesceInFlight
	}
	if cfg.MaxCoalesceRecords == 0 {
		cfg.MaxCoalesceRecords = DefaultMaxCoalesceRecords
	}
	if cfg.MaxCoalesceBytes == 0 {
		cfg.MaxCoalesceBytes = DefaultMaxCoalesceBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg
}

func (cfg Config) validate() error {
	if len(cfg.Seeds) == 0 {
		return fmt.Errorf("loadbalance: Config.Seeds: %w", ErrNoSeeds)
	}
	for _, s := range cfg.Seeds {
		if strings.Contains(s, ",") {
			return fmt.Errorf("loadbalance: Config.Seeds: %q holds a comma; give one address per entry", s)
		}
		if _, err := ParseSeeds(s); err != nil {
			return fmt.Errorf("loadbalance: Config.Seeds: %w", err)
		}
	}
	if cfg.TLSConfig == nil && !cfg.Insecure {
		return errors.New("loadbalance: Config.TLSConfig is nil; set Insecure to dial without TLS")
	}
	if cfg.TLSConfig != nil && cfg.Insecure {
		return errors.New("loadbalance: Config.TLSConfig and Config.Insecure are both set")
	}
	for name, d := range map[string]time.Duration{
		"ResolveInterval": cfg.ResolveInterval, "ResolveTimeout": cfg.ResolveTimeout,
		"RetryTimeout": cfg.RetryTimeout, "InitialBackoff": cfg.InitialBackoff,
		"MaxBackoff": cfg.MaxBackoff, "StreamResumeTimeout": cfg.StreamResumeTimeout,
		"AttemptTimeout": cfg.AttemptTimeout, "KeepaliveTimeout": cfg.KeepaliveTimeout,
		"ReconnectMaxBackoff": cfg.ReconnectMaxBackoff, "FailFastWhenRefused": cfg.FailFastWhenRefused,
	} {
		if d < 0 {
			return fmt.Errorf("loadbalance: Config.%s %v is negative", name, d)
		}
	}
	for name, n := range map[string]int{
		"CoalesceInFlight": cfg.CoalesceInFlight, "MaxCoalesceRecords": cfg.MaxCoalesceRecords,
		"MaxCoalesceBytes": cfg.MaxCoalesceBytes,
	} {
		if n < 0 {
			return fmt.Errorf("loadbalance: Config.%s %d is negative", name, n)
		}
	}
	if cfg.KeepaliveTime < MinKeepaliveTime {
		return fmt.Errorf("loadbalance: Config.KeepaliveTime %v is below %v, the least gRPC allows", cfg.KeepaliveTime, MinKeepaliveTime)
	}
	if cfg.InitialBackoff > cfg.MaxBackoff {
		return fmt.Errorf("loadbalance: Config.InitialBackoff %v exceeds MaxBackoff %v", cfg.InitialBackoff, cfg.MaxBackoff)
	}
	return nil
}

// Client is a proglog client balanced over the whole cluster: writes go to
// the leader, reads to followers. It owns one gRPC connection (one resolver,
// one balancer) and is safe for concurrent use.
type Client struct {
	cfg     Config
	logger  *zap.Logger
	builder *Builder
	conn    *grpc.ClientConn
	log     api.LogClient

	// producers are idle producer sessions: a call takes one (or makes
	// one), so concurrent calls never share a producer id, and gives it
	// back with its next sequence once the call's outcome is known.
	producersMu sync.Mutex
	producers   []*producerSession

	// coalescer queues concurrent Produce calls into batches.
	coalescer coalescer

	closeOnce sync.Once
	closeErr  error
}

// producerSession is an idempotent producer: an id and the sequence of its
// next call. One call uses it at a time.
type producerSession struct {
	id   uint64
	next uint64
}

// takeProducer returns an idle producer session, or a new one with a random
// id; nil when the client is not idempotent.
func (c *Client) takeProducer() *producerSession {
	if c.cfg.NotIdempotent {
		return nil
	}
	c.producersMu.Lock()
	defer c.producersMu.Unlock()
	if n := len(c.producers); n > 0 {
		p := c.producers[n-1]
		c.producers = c.producers[:n-1]
		return p
	}
	id := rand.Uint64()
	for id == 0 {
		id = rand.Uint64()
	}
	return &producerSession{id: id}
}

// giveProducer returns p after its call: appended (or found a duplicate),
// it goes back with its next sequence; after an error its state on the
// cluster is unknown (the call may or may not have been appended), so it is
// dropped and a later call starts a new producer.
func (c *Client) giveProducer(p *producerSession, err error) {
	if p == nil || err != nil {
		return
	}
	p.next++
	c.producersMu.Lock()
	defer c.producersMu.Unlock()
	c.producers = append(c.producers, p)
}

// producerFields are the producer id and sequence a call of p carries
// (zeros without one).
func (p *producerSession) fields() (id, seq uint64) {
	if p == nil {
		return 0, 0
	}
	return p.id, p.next
}

// New validates cfg and returns a Client. It does not wait for a connection:
// the first call does, within its deadline.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.Named("loadbalance")
	builder, err := NewBuilder(ResolverConfig{
		ResolveInterval: cfg.ResolveInterval,
		ResolveTimeout:  cfg.ResolveTimeout,
		Logger:          logger,
	})
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if cfg.TLSConfig != nil {
		creds = credentials.NewTLS(cfg.TLSConfig)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithResolvers(builder),
		clientKeepalive(cfg),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  min(reconnectBaseDelay, cfg.ReconnectMaxBackoff),
				Multiplier: reconnectMultiplier,
				Jitter:     reconnectJitter,
				MaxDelay:   cfg.ReconnectMaxBackoff,
			},
			// gRPC's default: how long one connection attempt (TCP and
			// TLS) may take. A paused server accepts TCP and then stalls
			// the handshake; calls do not wait on it (AttemptTimeout).
			MinConnectTimeout: 20 * time.Second,
		}),
		// The resolver sends the same service config; this covers a
		// ClientConn built with service configs disabled.
		grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, Name)),
	}, cfg.DialOptions...)
	target := Scheme + ":///" + strings.Join(cfg.Seeds, ",")
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("loadbalance: new client for %s: %w", target, err)
	}
	return &Client{
		cfg:     cfg,
		logger:  logger,
		builder: builder,
		conn:    conn,
		log:     api.NewLogClient(conn),
		coalescer: coalescer{
			topics:  map[string]*topicQueue{},
			batches: map[*produceBatch]struct{}{},
		},
	}, nil
}

// Conn returns the balanced connection, for calls the Client does not wrap
// (ProduceStream, health). Do not close it; Close the Client.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// LogClient returns a plain api.LogClient over the balanced connection:
// routed like the Client's calls, without retries.
func (c *Client) LogClient() api.LogClient { return c.log }

// ResolveNow asks the resolver to refresh the server list now.
func (c *Client) ResolveNow() { c.builder.ResolveNow() }

// Close closes the connection and stops the resolver. Safe to call more than
// once; later calls return the first result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeCoalescer()
		if err := c.conn.Close(); err != nil {
			c.closeErr = fmt.Errorf("loadbalance: close: %w", err)
		}
	})
	return c.closeErr
}

// Produce appends value to the log at the leader and returns its offset.
//
// Coalescing: unless Config.NoCoalesce is set, concurrent Produce calls to
// the same topic share RPCs. A call that finds fewer than
// Config.CoalesceInFlight RPCs of its topic in flight is sent at once, on
// its own; calls made while that many are in flight queue, and leave
// together, in the order they were made, as one ProduceBatch (up to
// MaxCoalesceRecords calls and MaxCoalesceBytes of values) when one of
// those RPCs ends. There is no timer: a lone writer's call goes at once.
// Each call gets its own offset (the batch's records are contiguous) and
// its own error. A call whose ctx ends while it is queued is withdrawn,
// never sent, and fails with ctx's error (status code Canceled or
// DeadlineExceeded); one whose ctx ends after it was sent fails the same
// way but may still be appended, as a call cancelled in flight may. A
// batch the server refuses for one record's sake (InvalidArgument, e.g. a
// value over its size limit) is resent one call at a time, so only that
// call fails; PermissionDenied and the like fail every call of the batch.
//
// It retries, with exponential backoff until ctx is done or, when ctx has
// no deadline, RetryTimeout has passed, when an attempt fails with
// codes.Unavailable (a follower's NOT_LEADER refusal, no leader known, a
// lost connection), when it gets no answer within AttemptTimeout (a paused
// leader), and when the resolver learns of a new leader while it is in
// flight (the old one is abandoned at once rather than waited out; a write
// slow to commit, a quarter of AttemptTimeout in, asks the resolver for the
// latest leader). A coalesced batch is retried as a whole, until the last
// of its callers' deadlines.
//
// Exactly once: unless Config.NotIdempotent is set, every RPC (a lone call
// or a coalesced batch) carries a producer id (one per concurrent RPC of
// this Client, random) and a sequence, the same on every retry, so a retry
// of a call the old leader appended gets the original offsets back and
// appends nothing. This holds while the cluster remembers the call (its
// last 5 calls per producer by default, and producers idle less than
// 24 h); a retry older than that is refused with codes.FailedPrecondition,
// never appended twice. With NotIdempotent a retried write is only sure to
// be appended once if the failed attempt was never sent.
//
// WithTopic writes to a topic other than the default one.
func (c *Client) Produce(ctx context.Context, value []byte, opts ...CallOption) (uint64, error) {
	o := applyCallOptions(opts)
	if c.cfg.NoCoalesce {
		return c.produceOne(ctx, o.topic, value)
	}
	return c.produceCoalesced(ctx, o.topic, value)
}

// ProduceBatch appends values contiguously, in order, as one unit at the
// leader and returns the offset of the first; the records hold first ..
// first+len(values)-1. It is never coalesced with other calls.
//
// It retries exactly like Produce, and like it is appended exactly once
// (one sequence for the whole batch) unless Config.NotIdempotent is set.
//
// WithTopic writes to a topic other than the default one.
func (c *Client) ProduceBatch(ctx context.Context, values [][]byte, opts ...CallOption) (uint64, error) {
	o := applyCallOptions(opts)
	first, _, err := c.produceBatch(ctx, "produce batch", o.topic, values)
	return first, err
}

// Consume reads the record at offset from a follower (or the leader when no
// follower is ready). Reads are idempotent, so it retries on
// codes.Unavailable and on an attempt that timed out, like Produce (a
// leader change does not matter to a read). An offset past the end fails
// with codes.OutOfRange (api.ErrOffsetOutOfRange on the server side).
//
// WithTopic reads a topic other than the default one.
//
// A follower that says an offset is past the end may only be behind (its
// disk filled up, it is cut off from the leader): it cannot know what the
// leader acknowledged since. So OutOfRange from a follower is checked with
// the leader, which holds every acknowledged record, before it is
// returned; an offset written before Consume was called is never reported
// out of range because one follower lags. The leader is asked only then,
// so reads still spread over the followers.
func (c *Client) Consume(ctx context.Context, offset uint64, opts ...CallOption) (*api.Record, error) {
	o := applyCallOptions(opts)
	o.batchRecords, o.batchBytes = 0, 0 // one record, in record
	records, err := c.consumeChecked(ctx, offset, o)
	if err != nil {
		return nil, err
	}
	return records[0], nil
}

// ConsumeBatch reads the records from offset on that a follower holds, in
// one call: up to the server's limits, or those WithBatches sets. It never
// waits to fill a batch, so it returns at least the record at offset and
// whatever follows it there. It retries, and checks an OutOfRange with the
// leader, as Consume does.
func (c *Client) ConsumeBatch(ctx context.Context, offset uint64, opts ...CallOption) ([]*api.Record, error) {
	o := applyCallOptions(opts)
	if o.batchRecords == 0 {
		o.batchRecords = math.MaxUint32
	}
	return c.consumeChecked(ctx, offset, o)
}

// consumeChecked is Consume and ConsumeBatch: a read from a follower whose
// OutOfRange is checked with the leader.
func (c *Client) consumeChecked(ctx context.Context, offset uint64, o callOptions) ([]*api.Record, error) {
	records, err := c.consume(ctx, offset, o)
	if status.Code(err) != codes.OutOfRange {
		return records, err
	}
	confirmed, leaderErr := c.consume(withLeaderRead(ctx), offset, o)
	if leaderErr == nil || status.Code(leaderErr) == codes.OutOfRange {
		return confirmed, leaderErr
	}
	// No leader to ask (an election, an outage): the follower's answer
	// is the best there is.
	c.logger.Debug("could not check out-of-range with the leader", zap.Uint64("offset", offset), zap.Error(leaderErr))
	return nil, err
}

// consume makes one Consume call, retried, and returns its records (the one
// record of an unbatched response), never none without an error.
func (c *Client) consume(ctx context.Context, offset uint64, o callOptions) ([]*api.Record, error) {
	var records []*api.Record
	err := c.retry(ctx, "consume", false, func(ctx context.Context) error {
		resp, err := c.log.Consume(ctx, &api.ConsumeRequest{Topic: o.topic, Offset: offset,
			MaxRecords: o.batchRecords, MaxBytes: o.batchBytes})
		if err != nil {
			return err
		}
		records, err = responseRecords(resp)
		if err == nil && o.batchRecords > 0 {
			err = checkBatch(records, offset)
		}
		return err
	})
	return records, err
}

// checkBatch makes sure a batch holds consecutive offsets from offset on:
// callers advance by its length.
func checkBatch(records []*api.Record, offset uint64) error {
	for k, record := range records {
		if record.GetOffset() != offset+uint64(k) {
			return fmt.Errorf("loadbalance: consume at %d: record %d of the batch has offset %d", offset, k, record.GetOffset())
		}
	}
	return nil
}

// responseRecords returns a ConsumeResponse's records: its batch, or its
// one record; a response with neither is an error.
func responseRecords(resp *api.ConsumeResponse) ([]*api.Record, error) {
	if records := resp.GetRecords(); len(records) > 0 {
		return records, nil
	}
	if record := resp.GetRecord(); record != nil {
		return []*api.Record{record}, nil
	}
	return nil, errors.New("loadbalance: consume: response without a record")
}

// GetServers lists the cluster's servers as one of them sees it, retrying
// like Consume.
func (c *Client) GetServers(ctx context.Context) ([]*api.Server, error) {
	var servers []*api.Server
	err := c.retry(ctx, "get servers", false, func(ctx context.Context) error {
		resp, err := c.log.GetServers(ctx, &api.GetServersRequest{})
		if err != nil {
			return err
		}
		servers = resp.GetServers()
		return nil
	})
	return servers, err
}

// ConsumeStream calls fn with every record from offset from on, in order,
// each once, and keeps waiting for new records until ctx is done or fn
// returns an error; it returns ctx's error or fn's.
//
// When the stream breaks (codes.Unavailable, or io.EOF from a server that is
// stopping) it opens a new one, routed afresh so it lands on another server
// if that one is gone, from the offset after the last record fn received.
// A server that went silent (paused, or cut off without a reset) is noticed
// by keepalive, KeepaliveTime + KeepaliveTimeout after its last word, which
// breaks the stream with codes.Unavailable; a new stream whose server does
// not answer with its headers within AttemptTimeout is abandoned the same
// way. Silence alone is not taken for a failure sooner: a caught-up
// consumer's stream is silent whenever the log is idle.
//
// It gives up when it has failed to open a stream for StreamResumeTimeout:
// a stream counts as open once the server has answered with its headers
// (proglog servers do so at once) or a record. Any other error ends it,
// wrapped.
//
// WithTopic reads a topic other than the default one; WithBatches receives
// records in batches (fn is still called once per record).
func (c *Client) ConsumeStream(ctx context.Context, from uint64, fn func(*api.Record) error, opts ...CallOption) error {
	return c.consumeStream(ctx, from, func(records []*api.Record) error {
		for _, record := range records {
			if err := fn(record); err != nil {
				return err
			}
		}
		return nil
	}, applyCallOptions(opts))
}

// ConsumeBatches is ConsumeStream with batches: it asks the server for
// batches (by default as large as the server allows; WithBatches sets
// smaller limits) and calls fn with each, in order: records at consecutive
// offsets, never empty, and never one fn has seen before, even across a
// resumed stream. A consumer that is behind gets full batches; one that
// has caught up gets records as they are appended. The slice and records
// are fn's to keep: each call gets fresh ones. It reads from followers,
// resumes broken streams and gives up as ConsumeStream does, and returns
// ctx's error or fn's.
func (c *Client) ConsumeBatches(ctx context.Context, from uint64, fn func([]*api.Record) error, opts ...CallOption) error {
	o := applyCallOptions(opts)
	if o.batchRecords == 0 {
		o.batchRecords = math.MaxUint32
	}
	return c.consumeStream(ctx, from, fn, o)
}

// consumeStream runs ConsumeStream and ConsumeBatches: streams from from
// on, resumed as ConsumeStream says, with each response's records handed
// to fn.
func (c *Client) consumeStream(ctx context.Context, from uint64, fn func([]*api.Record) error, o callOptions) error {
	next := from
	bo := c.newBackoff()
	start := time.Now()
	var failingSince time.Time
	for {
		opened, received, err := c.consumeStreamOnce(ctx, o, &next, fn)
		var fnErr callbackError
		if errors.As(err, &fnErr) {
			return fnErr.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !resumable(err) {
			return fmt.Errorf("loadbalance: consume stream at offset %d: %w", next, err)
		}
		if c.nothingListens(start, err) {
			return fmt.Errorf("loadbalance: consume stream at offset %d: %w (%w)", next, err, ErrNothingListens)
		}
		if opened {
			// The stream worked, however long it then sat idle: this break
			// starts a new failure period. Counting from an earlier break
			// instead would end a caught-up consumer on the first break
			// after StreamResumeTimeout of quiet.
			failingSince = time.Time{}
		}
		if received {
			// Only records reset the backoff: a server that accepts streams
			// and breaks them at once is retried ever more slowly.
			bo.reset()
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		} else if time.Since(failingSince) > c.cfg.StreamResumeTimeout {
			return fmt.Errorf("loadbalance: consume stream at offset %d: no stream opened for %v: %w",
				next, c.cfg.StreamResumeTimeout, err)
		}
		c.logger.Info("consume stream broke; resuming", zap.Uint64("offset", next), zap.Error(err))
		c.builder.ResolveNow()
		if err := bo.wait(ctx); err != nil {
			return err
		}
	}
}

// callbackError marks an error returned by the caller's fn, so it is passed
// back untouched rather than taken for a stream failure.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// consumeStreamOnce runs one stream from *next until it breaks, advancing
// *next past the records handed to fn. It reports whether the stream opened
// (the server sent its headers or a record) and whether fn got a record.
func (c *Client) consumeStreamOnce(ctx context.Context, o callOptions, next *uint64, fn func([]*api.Record) error) (opened, received bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil) // ends the stream on every return
	// A paused server accepts the stream at the transport level and then
	// says nothing; keepalive would take longer to notice.
	openTimer := time.AfterFunc(c.cfg.AttemptTimeout, func() { cancel(ErrAttemptTimeout) })
	defer openTimer.Stop()
	stream, err := c.log.ConsumeStream(ctx, &api.ConsumeRequest{Topic: o.topic, Offset: *next,
		MaxRecords: o.batchRecords, MaxBytes: o.batchBytes})
	if err != nil {
		return false, false, c.attemptError(ctx, err)
	}
	// Header blocks until the server's headers arrive (a proglog server
	// sends them as soon as it accepts the stream). It returns nil headers,
	// and no error, when the stream failed first; the failure itself comes
	// from Recv.
	header, err := stream.Header()
	if err != nil {
		return false, false, c.attemptError(ctx, err)
	}
	// If the timer fired after all, Recv fails at once and the error says
	// why: the stream never counts as opened.
	opened = openTimer.Stop() && header != nil
	for {
		resp, err := stream.Recv()
		if err != nil {
			return opened, received, c.attemptError(ctx, err)
		}
		records, err := responseRecords(resp)
		if err != nil {
			return opened, received, err
		}
		// Records already handed to fn are dropped; a server must not
		// resend them.
		for len(records) > 0 && records[0].GetOffset() < *next {
			records = records[1:]
		}
		if len(records) == 0 {
			continue
		}
		if err := checkBatch(records, records[0].GetOffset()); err != nil {
			return opened, received, err
		}
		opened = true
		if err := fn(records); err != nil {
			return opened, received, callbackError{err}
		}
		received = true
		*next = records[len(records)-1].GetOffset() + 1
	}
}

// resumable reports whether a broken stream is worth reopening elsewhere.
func resumable(err error) bool {
	return errors.Is(err, io.EOF) || retryable(err)
}

// retryable reports whether a failed attempt is worth another: the server
// was unreachable or not the leader, it did not answer in time, or the
// leader changed under it.
func retryable(err error) bool {
	return status.Code(err) == codes.Unavailable ||
		errors.Is(err, ErrAttemptTimeout) || errors.Is(err, errLeaderChanged)
}

// retry runs call until it succeeds, fails in a way retryable does not
// accept, or the deadline passes. Before each retry it asks the resolver for
// a fresh server list, so a NOT_LEADER answer moves the next attempt to the
// new leader as soon as a server knows it. write marks calls that must
// reach the leader.
func (c *Client) retry(ctx context.Context, op string, write bool, call func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RetryTimeout)
		defer cancel()
	}
	bo := c.newBackoff()
	start := time.Now()
	// informative is the last attempt error that says more than "the
	// caller's deadline passed": when the deadline cuts the final attempt
	// short, the error reports why the attempts before it failed
	// (connection refused, NOT_LEADER) instead.
	var informative error
	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, write, call)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			if informative != nil && cutByContext(err) {
				err = informative
			}
			// Said the same way as a deadline that passes during the
			// backoff below, whichever way the attempt ended.
			return gaveUp(op, attempt, err, ctx.Err())
		}
		if !retryable(err) {
			return err
		}
		if c.nothingListens(start, err) {
			return fmt.Errorf("loadbalance: %s: gave up after %d attempts in %v: %w (%w)",
				op, attempt, time.Since(start).Round(time.Millisecond), err, ErrNothingListens)
		}
		informative = err
		fields := []zap.Field{zap.String("op", op), zap.Int("attempt", attempt), zap.Error(err)}
		if st, ok := status.FromError(err); ok {
			if nl, ok := api.NotLeaderFromStatus(st); ok {
				fields = append(fields, zap.String("leader_addr", nl.LeaderAddr))
			}
		}
		c.logger.Debug("retrying", fields...)
		// A write waits for a new leader: the resolver reporting one ends
		// the backoff early, so the write goes as soon as it is known.
		var newLeader <-chan struct{}
		stop := func() {}
		if write {
			ch := make(chan struct{})
			stop = c.builder.onLeaderChange(func() { close(ch) })
			newLeader = ch
		}
		c.builder.ResolveNow()
		waitErr := bo.waitOr(ctx, newLeader)
		stop()
		if waitErr != nil {
			return gaveUp(op, attempt, err, waitErr)
		}
	}
}

// nothingListens reports whether a call that started at start and just
// failed with err should stop because of Config.FailFastWhenRefused: no
// server ever answered this client, err is a refused connection, and the
// allowance has passed.
func (c *Client) nothingListens(start time.Time, err error) bool {
	return c.cfg.FailFastWhenRefused > 0 && !c.builder.answered.Load() &&
		refused(err) && time.Since(start) >= c.cfg.FailFastWhenRefused
}

// refused reports whether err says a connection was refused. gRPC reports
// dial errors (and the resolver's, which the picker passes on) only as
// status messages, so the message is all there is to look at.
func refused(err error) bool {
	return status.Code(err) == codes.Unavailable &&
		strings.Contains(status.Convert(err).Message(), "connection refused")
}

// cutByContext reports whether err only says that the call's context ended.
func cutByContext(err error) bool {
	code := status.Code(err)
	return code == codes.DeadlineExceeded || code == codes.Canceled ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// gaveUp is the error of a call whose deadline passed (or whose context was
// cancelled) after attempts tries. The last attempt's error comes first, so
// status.Code of the result is its code (Unavailable, DeadlineExceeded);
// errors.Is finds ctxErr, and ErrAttemptTimeout if the last attempt timed
// out.
func gaveUp(op string, attempts int, err, ctxErr error) error {
	return fmt.Errorf("loadbalance: %s: gave up after %d attempts: %w (%w)", op, attempts, err, ctxErr)
}

// attempt runs call once, within AttemptTimeout (or what is left of ctx,
// if less: a context's deadline never outlives its parent's). For a write
// it also abandons the attempt when the resolver reports a new leader, and
// asks the resolver for one when the write is slow.
func (c *Client) attempt(ctx context.Context, write bool, call func(context.Context) error) error {
	attemptCtx, abandon := context.WithCancelCause(ctx)
	defer abandon(nil)
	attemptCtx, cancel := context.WithTimeoutCause(attemptCtx, c.cfg.AttemptTimeout, ErrAttemptTimeout)
	defer cancel()
	if write {
		// Registered before the call, so a change that lands between the
		// pick and the answer is not missed. A change before the pick
		// only costs an attempt that was never sent.
		stop := c.builder.onLeaderChange(func() { abandon(errLeaderChanged) })
		defer stop()
		// A write commits in milliseconds; one still pending after a
		// quarter of the attempt timeout suggests the leader is gone, and
		// the resolver's answer (a new leader) ends the wait above early.
		slow := time.AfterFunc(c.cfg.AttemptTimeout/4, c.builder.ResolveNow)
		defer slow.Stop()
	}
	return c.attemptError(attemptCtx, call(attemptCtx))
}

// attemptError marks err, the result of a call made with attemptCtx, with
// the reason the client itself ended the call (ErrAttemptTimeout or
// errLeaderChanged), so retry and resumable know it was not the server's
// answer. Other errors are returned as they are.
func (c *Client) attemptError(attemptCtx context.Context, err error) error {
	if err == nil {
		return nil
	}
	code := status.Code(err)
	if code != codes.DeadlineExceeded && code != codes.Canceled {
		return err
	}
	cause := context.Cause(attemptCtx)
	if deadline, ok := attemptCtx.Deadline(); ok && cause == nil && code == codes.DeadlineExceeded && !time.Now().Before(deadline) {
		// The server enforced the deadline the call carried a moment
		// before the local timer fired; it is about to. Wait for it to
		// learn whose deadline it was (the attempt's or the caller's).
		<-attemptCtx.Done()
		cause = context.Cause(attemptCtx)
	}
	switch {
	case errors.Is(cause, ErrAttemptTimeout):
		return fmt.Errorf("%w (%v): %w", cause, c.cfg.AttemptTimeout, err)
	case errors.Is(cause, errLeaderChanged):
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// backoff is exponential with "equal jitter": half the step fixed, half
// random, so clients retrying together spread out.
type backoff struct {
	initial, max, step time.Duration
}

func (c *Client) newBackoff() *backoff {
	return &backoff{initial: c.cfg.InitialBackoff, max: c.cfg.MaxBackoff, step: c.cfg.InitialBackoff}
}

func (b *backoff) reset() { b.step = b.initial }

// wait sleeps for the next step, or returns ctx's error if ctx ends first.
func (b *backoff) wait(ctx context.Context) error {
	return b.waitOr(ctx, nil)
}

// waitOr is wait that also ends, without error, when wake is closed (a nil
// wake never is).
func (b *backoff) waitOr(ctx context.Context, wake <-chan struct{}) error {
	d := b.step/2 + rand.N(b.step/2+1)
	b.step = min(2*b.step, b.max)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	case <-wake:
		return nil
	}
}
