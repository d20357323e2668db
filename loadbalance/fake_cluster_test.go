package loadbalance

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

func TestMain(m *testing.M) {
	// Register before any test creates a gRPC client: the registry is a
	// plain map inside gRPC.
	Register()
	goleak.VerifyTestMain(m)
}

// fakeCluster is a set of in-process gRPC servers that share one log and one
// notion of who leads, like a Raft cluster seen from outside. Each server
// answers GetServers with the whole list, refuses writes with NOT_LEADER
// unless it leads, and counts the RPCs it receives.
type fakeCluster struct {
	opts []grpc.ServerOption // options of every server, restarted ones too

	// servers is replaced element-wise by restart, under mu; tests that
	// restart read it through server(i).
	servers []*fakeServer

	mu     sync.Mutex
	leader int // index of the leader in servers; -1 for none. Guarded by mu.
	// isolated servers name no leader in GetServers (cut off from the
	// others, as an old leader on the minority side). Guarded by mu.
	isolated map[int]bool
	records  [][]byte // the shared log. Guarded by mu.
	// appended is closed and replaced on every append, waking streams.
	// Guarded by mu.
	appended chan struct{}
	// producers is the last call of each idempotent producer, as the real
	// cluster's producer table with a window of one. Guarded by mu.
	producers map[uint64]fakeProducerCall
	// batches are the ProduceBatch requests that reached a handler, on any
	// server, in order. Guarded by mu.
	batches []fakeBatch
	// maxRecordBytes, when positive, is the largest value Produce and
	// ProduceBatch accept; larger ones are refused with InvalidArgument,
	// a whole batch with them. Guarded by mu.
	maxRecordBytes int
}

// fakeProducerCall is the last call a producer made: its sequence and the
// offsets it got.
type fakeProducerCall struct {
	sequence, first, count uint64
}

// fakeBatch is one ProduceBatch request as a server received it.
type fakeBatch struct {
	server     int
	producerID uint64
	sequence   uint64
	records    int
}

// newFakeCluster starts n plaintext servers on 127.0.0.1:0, server 0
// leading.
func newFakeCluster(t testing.TB, n int) *fakeCluster {
	t.Helper()
	return newFakeClusterWith(t, n)
}

// newFakeClusterWith starts n servers with extra server options (e.g. TLS
// credentials).
func newFakeClusterWith(t testing.TB, n int, opts ...grpc.ServerOption) *fakeCluster {
	t.Helper()
	c := &fakeCluster{leader: 0, appended: make(chan struct{}), opts: opts}
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		c.servers = append(c.servers, c.newServer(len(c.servers), lis))
	}
	for _, s := range c.servers {
		s.serve()
	}
	t.Cleanup(func() {
		for _, s := range c.serversNow() {
			s.stop()
		}
	})
	return c
}

// newServer builds server i on lis; serve starts it.
func (c *fakeCluster) newServer(i int, lis net.Listener) *fakeServer {
	s := &fakeServer{
		cluster:    c,
		index:      i,
		addr:       lis.Addr().String(),
		lis:        &countingListener{Listener: lis},
		stopping:   make(chan struct{}),
		callsByRPC: make(map[string]int),
	}
	s.grpc = grpc.NewServer(append([]grpc.ServerOption{
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			s.count(info.FullMethod)
			if err := s.waitThawed(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			s.count(info.FullMethod)
			if err := s.waitThawed(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}, c.opts...)...)
	api.RegisterLogServer(s.grpc, s)
	return s
}

// serve starts serving in a goroutine that stop waits for.
func (s *fakeServer) serve() {
	s.serveDone = make(chan struct{})
	go func() {
		defer close(s.serveDone)
		_ = s.grpc.Serve(s.lis) // returns when the server stops
	}()
}

// restart starts a new server i on the address of the stopped one (a
// process that came back), with fresh counters.
func (c *fakeCluster) restart(t *testing.T, i int) *fakeServer {
	t.Helper()
	old := c.server(i)
	old.stop()
	lis, err := net.Listen("tcp", old.addr)
	require.NoError(t, err, "listen again on %s", old.addr)
	s := c.newServer(i, lis)
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	s.serve()
	return s
}

// server returns server i as it is now (restart replaces it).
func (c *fakeCluster) server(i int) *fakeServer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// serversNow returns a copy of the server list.
func (c *fakeCluster) serversNow() []*fakeServer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*fakeServer(nil), c.servers...)
}

// advertise makes server i list itself (in GetServers and NOT_LEADER
// answers) at addr, e.g. a proxy in front of it. Call it before any client
// dials.
func (c *fakeCluster) advertise(i int, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers[i].addr = addr
}

// isolate makes server i name no leader in GetServers.
func (c *fakeCluster) isolate(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isolated == nil {
		c.isolated = map[int]bool{}
	}
	c.isolated[i] = true
}

func (c *fakeCluster) setLeader(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leader = i
}

// append adds values to the log and returns the offset of the first.
func (c *fakeCluster) append(values ...[]byte) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := uint64(len(c.records))
	c.records = append(c.records, values...)
	close(c.appended)
	c.appended = make(chan struct{})
	return first
}

// appendProduced appends values for a produce call carrying producer and
// sequence (0: not idempotent) as the real cluster does: a call that repeats
// the producer's last sequence gets its offsets back and appends nothing,
// and a sequence past the next is refused. It returns the first offset and
// whether the call was a duplicate.
func (c *fakeCluster) appendProduced(producer, sequence uint64, values [][]byte) (uint64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range values {
		if c.maxRecordBytes > 0 && len(v) > c.maxRecordBytes {
			return 0, false, status.Errorf(codes.InvalidArgument, "record too large: value is %d bytes, over the %d-byte limit", len(v), c.maxRecordBytes)
		}
	}
	if producer != 0 {
		last, known := c.producers[producer]
		switch {
		case known && sequence == last.sequence:
			return last.first, true, nil
		case known && sequence != last.sequence+1:
			return 0, false, status.Errorf(codes.FailedPrecondition, "producer %d: sequence %d, want %d", producer, sequence, last.sequence+1)
		}
	}
	first := uint64(len(c.records))
	c.records = append(c.records, values...)
	close(c.appended)
	c.appended = make(chan struct{})
	if producer != 0 {
		if c.producers == nil {
			c.producers = map[uint64]fakeProducerCall{}
		}
		c.producers[producer] = fakeProducerCall{sequence: sequence, first: first, count: uint64(len(values))}
	}
	return first, false, nil
}

// values returns a copy of the log.
func (c *fakeCluster) values() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.records...)
}

// batchRequests returns the ProduceBatch requests received so far.
func (c *fakeCluster) batchRequests() []fakeBatch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]fakeBatch(nil), c.batches...)
}

// setMaxRecordBytes makes the servers refuse values over n bytes.
func (c *fakeCluster) setMaxRecordBytes(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maxRecordBytes = n
}

// addrs lists the servers' addresses in index order.
func (c *fakeCluster) addrs() []string {
	out := make([]string, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.addr
	}
	return out
}

// callCounts returns how many calls of method each server received.
func (c *fakeCluster) callCounts(method string) []int {
	out := make([]int, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.calls(method)
	}
	return out
}

// connections returns how many connections each server accepted.
func (c *fakeCluster) connections() []int64 {
	out := make([]int64, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.lis.accepted.Load()
	}
	return out
}

type fakeServer struct {
	api.UnimplementedLogServer

	cluster   *fakeCluster
	index     int
	addr      string
	lis       *countingListener
	grpc      *grpc.Server
	serveDone chan struct{} // closed when Serve returns

	stopOnce sync.Once
	stopping chan struct{} // closed by stop: open streams end with io.EOF

	mu         sync.Mutex
	callsByRPC map[string]int // full method name → calls. Guarded by mu.
	streamFrom []uint64       // offsets ConsumeStream was opened at. Guarded by mu.
	// streamBatches are the max_records of the ConsumeStreams opened.
	// Guarded by mu.
	streamBatches []uint32
	// behind is how many of the newest records Consume does not see.
	// Guarded by mu.
	behind uint64
	// thawed is nil while the server answers; while it is frozen, calls
	// wait for this channel, closed by thaw. Guarded by mu.
	thawed chan struct{}
	// loseBatchAnswers makes ProduceBatch append and then never answer,
	// as a leader that crashed after committing. Guarded by mu.
	loseBatchAnswers bool
}

// loseAnswers makes s append every ProduceBatch it gets and then hang until
// the caller gives up, so the client never learns the outcome.
func (s *fakeServer) loseAnswers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loseBatchAnswers = true
}

// freeze makes every later call hang, counted but unanswered, until thaw or
// the caller gives up: a paused process, as the client sees it, except that
// the transport still answers pings (see pausableProxy for that).
func (s *fakeServer) freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.thawed == nil {
		s.thawed = make(chan struct{})
	}
}

// thaw lets waiting and later calls through.
func (s *fakeServer) thaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.thawed != nil {
		close(s.thawed)
		s.thawed = nil
	}
}

// waitThawed returns at once unless s is frozen; then it waits for thaw, the
// call's end or the server's stop.
func (s *fakeServer) waitThawed(ctx context.Context) error {
	s.mu.Lock()
	thawed := s.thawed
	s.mu.Unlock()
	if thawed == nil {
		return nil
	}
	select {
	case <-thawed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopping:
		return status.Error(codes.Unavailable, "fake server stopping")
	}
}

func (s *fakeServer) count(method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callsByRPC[method]++
}

func (s *fakeServer) calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsByRPC[method]
}

func (s *fakeServer) streamOffsets() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.streamFrom...)
}

// streamMaxRecords returns the max_records of each ConsumeStream opened on
// the server.
func (s *fakeServer) streamMaxRecords() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.streamBatches...)
}

// stop ends open streams cleanly (io.EOF at the client, as from a server
// shutting down), then stops the server. Idempotent.
func (s *fakeServer) stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.grpc.Stop()
		<-s.serveDone
	})
}

// notLeader returns the refusal a follower gives a write, or nil when s
// leads: the status the real server sends for an api.ErrNotLeader
// (Unavailable with the NOT_LEADER ErrorInfo).
func (s *fakeServer) notLeader() error {
	c := s.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == s.index {
		return nil
	}
	var refusal api.ErrNotLeader
	if c.leader >= 0 {
		l := c.servers[c.leader]
		refusal = api.ErrNotLeader{LeaderID: serverID(l.index), LeaderAddr: l.addr}
	}
	st, err := status.New(codes.Unavailable, refusal.Error()).WithDetails(refusal.ErrorInfo())
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.Err()
}

func (s *fakeServer) Produce(_ context.Context, req *api.ProduceRequest) (*api.ProduceResponse, error) {
	if err := s.notLeader(); err != nil {
		return nil, err
	}
	offset, dup, err := s.cluster.appendProduced(req.GetProducerId(), req.GetSequence(), [][]byte{req.GetRecord().GetValue()})
	if err != nil {
		return nil, err
	}
	return &api.ProduceResponse{Offset: offset, Duplicate: dup}, nil
}

func (s *fakeServer) ProduceBatch(ctx context.Context, req *api.ProduceBatchRequest) (*api.ProduceBatchResponse, error) {
	s.cluster.mu.Lock()
	s.cluster.batches = append(s.cluster.batches, fakeBatch{server: s.index, producerID: req.GetProducerId(),
		sequence: req.GetSequence(), records: len(req.GetRecords())})
	s.cluster.mu.Unlock()
	if err := s.notLeader(); err != nil {
		return nil, err
	}
	values := make([][]byte, len(req.GetRecords()))
	for i, r := range req.GetRecords() {
		values[i] = r.GetValue()
	}
	first, dup, err := s.cluster.appendProduced(req.GetProducerId(), req.GetSequence(), values)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	lose := s.loseBatchAnswers
	s.mu.Unlock()
	if lose {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stopping:
			return nil, status.Error(codes.Unavailable, "fake server stopping")
		}
	}
	return &api.ProduceBatchResponse{FirstOffset: first, Count: uint64(len(values)), Duplicate: dup}, nil
}

// ProduceStream appends each value and answers with its offset, refusing
// with NOT_LEADER (ending the stream) once the server no longer leads.
func (s *fakeServer) ProduceStream(stream api.Log_ProduceStreamServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.waitThawed(stream.Context()); err != nil {
			return err
		}
		if err := s.notLeader(); err != nil {
			return err
		}
		offset := s.cluster.append(req.GetRecord().GetValue())
		if err := stream.Send(&api.ProduceResponse{Offset: offset}); err != nil {
			return err
		}
	}
}

// record returns the record at offset, or ok false, and the channel closed
// on the next append.
func (c *fakeCluster) record(offset uint64) (rec *api.Record, ok bool, appended <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if offset >= uint64(len(c.records)) {
		return nil, false, c.appended
	}
	return &api.Record{Value: c.records[offset], Offset: offset}, true, c.appended
}

// lagBehind makes the server miss the last n records of the log, as a
// follower that fell behind does.
func (s *fakeServer) lagBehind(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behind = n
}

func (s *fakeServer) Consume(_ context.Context, req *api.ConsumeRequest) (*api.ConsumeResponse, error) {
	rec, ok, _ := s.cluster.record(req.GetOffset())
	s.mu.Lock()
	behind := s.behind
	s.mu.Unlock()
	if ok && behind > 0 {
		// Seen only when the record `behind` later exists too.
		_, ok, _ = s.cluster.record(req.GetOffset() + behind)
	}
	if !ok {
		return nil, status.Error(codes.OutOfRange, api.ErrOffsetOutOfRange{Offset: req.GetOffset()}.Error())
	}
	if req.GetMaxRecords() == 0 {
		return &api.ConsumeResponse{Record: rec}, nil
	}
	// Batched: what this server sees from the offset on, up to max_records
	// (max_bytes is not looked at).
	batch := []*api.Record{rec}
	for uint32(len(batch)) < req.GetMaxRecords() {
		next := req.GetOffset() + uint64(len(batch))
		r, ok, _ := s.cluster.record(next)
		if ok && behind > 0 {
			_, ok, _ = s.cluster.record(next + behind)
		}
		if !ok {
			break
		}
		batch = append(batch, r)
	}
	return &api.ConsumeResponse{Records: batch}, nil
}

func (s *fakeServer) ConsumeStream(req *api.ConsumeRequest, stream api.Log_ConsumeStreamServer) error {
	s.mu.Lock()
	s.streamFrom = append(s.streamFrom, req.GetOffset())
	s.streamBatches = append(s.streamBatches, req.GetMaxRecords())
	s.mu.Unlock()
	// Like the real server: headers first, so the client knows the stream
	// is up before any record.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for offset := req.GetOffset(); ; {
		rec, ok, appended := s.cluster.record(offset)
		if ok && req.GetMaxRecords() > 0 {
			// Batched, as the real server: what the log holds, up to
			// max_records (max_bytes is not looked at).
			batch := []*api.Record{rec}
			for uint32(len(batch)) < req.GetMaxRecords() {
				next, ok, _ := s.cluster.record(offset + uint64(len(batch)))
				if !ok {
					break
				}
				batch = append(batch, next)
			}
			if err := stream.Send(&api.ConsumeResponse{Records: batch}); err != nil {
				return err
			}
			offset += uint64(len(batch))
			continue
		}
		if ok {
			if err := stream.Send(&api.ConsumeResponse{Record: rec}); err != nil {
				return err
			}
			offset++
			continue
		}
		select {
		case <-appended:
		case <-s.stopping:
			return nil
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (s *fakeServer) GetServers(context.Context, *api.GetServersRequest) (*api.GetServersResponse, error) {
	c := s.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &api.GetServersResponse{}
	for _, srv := range c.servers {
		resp.Servers = append(resp.Servers, &api.Server{
			Id:       serverID(srv.index),
			RpcAddr:  srv.addr,
			IsLeader: srv.index == c.leader && !c.isolated[s.index],
		})
	}
	return resp, nil
}

func serverID(i int) string { return "server-" + string(rune('0'+i)) }

// countingListener counts accepted connections, to show a leader change does
// not reconnect.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return conn, err
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}
