package loadbalance

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// pausableProxy forwards TCP connections to a target and can stop
// forwarding bytes, both ways, without closing anything: to the client, the
// server behind it looks paused (SIGSTOP), which a fakeServer's freeze does
// not fake at the transport level (its gRPC transport still answers pings).
type pausableProxy struct {
	lis    net.Listener
	target string

	mu sync.Mutex
	// resumed is nil while bytes flow; while paused, copiers wait for it to
	// close. Guarded by mu.
	resumed chan struct{}
	conns   []net.Conn // every connection, both sides. Guarded by mu.

	closed    chan struct{} // closed by close: copiers and the acceptor exit
	closeOnce sync.Once
	wg        sync.WaitGroup // the acceptor and every copier
}

// newPausableProxy listens on 127.0.0.1:0 and forwards to target until the
// test ends.
func newPausableProxy(t *testing.T, target string) *pausableProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &pausableProxy{lis: lis, target: target, closed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *pausableProxy) addr() string { return p.lis.Addr().String() }

func (p *pausableProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.lis.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.copy(server, client)
		go p.copy(client, server)
	}
}

// copy forwards src to dst, holding each chunk while the proxy is paused.
func (p *pausableProxy) copy(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitResumed() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// Pass the end on, so the other copier's Read ends too.
			_ = dst.Close()
			return
		}
	}
}

// waitResumed returns true at once while bytes flow, after resume while
// paused, and false when the proxy closes.
func (p *pausableProxy) waitResumed() bool {
	p.mu.Lock()
	resumed := p.resumed
	p.mu.Unlock()
	if resumed == nil {
		return true
	}
	select {
	case <-resumed:
		return true
	case <-p.closed:
		return false
	}
}

func (p *pausableProxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resumed == nil {
		p.resumed = make(chan struct{})
	}
}

// close stops accepting, closes every connection and waits for the
// goroutines. Idempotent.
func (p *pausableProxy) close() {
	p.closeOnce.Do(func() {
		close(p.closed)
		_ = p.lis.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

// A consumer streaming from a server that goes silent at the transport level
// (paused) gets its records from another server once keepalive gives up on
// the silent one: KeepaliveTime (10 s, gRPC's least) + KeepaliveTimeout.
// The one slow test of the package: gRPC offers no shorter ping interval.
func TestKeepaliveMovesAStreamOffASilentServer(t *testing.T) {
	const keepaliveTimeout = time.Second
	cluster := newFakeClusterWith(t, 3, ServerKeepaliveOptions()...)
	// Both followers behind proxies, so whichever gets the stream can be
	// silenced.
	proxies := map[int]*pausableProxy{}
	for _, i := range []int{1, 2} {
		proxies[i] = newPausableProxy(t, cluster.servers[i].addr)
		cluster.advertise(i, proxies[i].addr())
	}
	client := newTestClient(t, Config{
		Seeds: cluster.addrs(), KeepaliveTimeout: keepaliveTimeout,
		InitialBackoff: 10 * time.Millisecond, ResolveTimeout: 500 * time.Millisecond,
	})
	cluster.append([]byte("v0"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitBothFollowers(t, ctx, client, cluster)

	records := make(chan uint64, 16)
	done := make(chan error, 1)
	go func() {
		done <- client.ConsumeStream(ctx, 0, func(r *api.Record) error {
			records <- r.GetOffset()
			return nil
		})
	}()
	select {
	case got := <-records:
		require.Equal(t, uint64(0), got)
	case err := <-done:
		t.Fatalf("ConsumeStream ended: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no first record")
	}
	serving := -1
	for _, i := range []int{1, 2} {
		if len(cluster.servers[i].streamOffsets()) > 0 {
			serving = i
		}
	}
	require.NotEqual(t, -1, serving, "no follower holds the stream")

	proxies[serving].pause()
	paused := time.Now()
	cluster.append([]byte("v1"))
	limit := DefaultKeepaliveTime + keepaliveTimeout + 5*time.Second
	select {
	case got := <-records:
		require.Equal(t, uint64(1), got)
	case err := <-done:
		t.Fatalf("ConsumeStream ended: %v", err)
	case <-time.After(limit):
		t.Fatalf("no record within %v of the server going silent: the stream stayed on it", limit)
	}
	elapsed := time.Since(paused)
	t.Logf("stream resumed %v after its server went silent", elapsed)
	other := 3 - serving
	require.Contains(t, cluster.servers[other].streamOffsets(), uint64(1),
		"streams opened on server %d: want one resumed at offset 1", other)
	cancel()
	require.ErrorIs(t, waitDone(t, done, 5*time.Second, "ConsumeStream"), context.Canceled)
}

// rawPinger is an HTTP/2 client with no gRPC in it, to send keepalive pings
// at any interval (gRPC's client will not ping more often than every 10 s).
type rawPinger struct {
	conn   net.Conn
	framer *http2.Framer
	wmu    sync.Mutex // serialises writes to framer

	acks   chan struct{} // one per ping acknowledged
	goAway chan string   // the debug data of a GOAWAY
	done   chan struct{} // closed when the reader exits
}

func newRawPinger(t *testing.T, addr string) *rawPinger {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	p := &rawPinger{
		conn: conn, framer: http2.NewFramer(conn, conn),
		acks: make(chan struct{}, 64), goAway: make(chan string, 1), done: make(chan struct{}),
	}
	_, err = io.WriteString(conn, http2.ClientPreface)
	require.NoError(t, err)
	require.NoError(t, p.write(func() error { return p.framer.WriteSettings() }))
	go p.read()
	t.Cleanup(func() {
		_ = conn.Close()
		<-p.done
	})
	return p
}

func (p *rawPinger) write(f func() error) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return f()
}

// read answers the server's settings and pings (a client that did not would
// be closed for it) and reports ping acks and GOAWAY.
func (p *rawPinger) read() {
	defer close(p.done)
	for {
		frame, err := p.framer.ReadFrame()
		if err != nil {
			return
		}
		switch f := frame.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = p.write(p.framer.WriteSettingsAck)
			}
		case *http2.PingFrame:
			if f.IsAck() {
				p.acks <- struct{}{}
			} else {
				data := f.Data
				_ = p.write(func() error { return p.framer.WritePing(true, data) })
			}
		case *http2.GoAwayFrame:
			select {
			case p.goAway <- string(f.DebugData()):
			default:
			}
		}
	}
}

// pingEvery sends n pings, one per interval, with no call in flight, and
// returns how many were acknowledged and the GOAWAY's debug data, if any.
func (p *rawPinger) pingEvery(t *testing.T, interval time.Duration, n int) (acked int, goAway string) {
	t.Helper()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for i := range n {
		require.NoError(t, p.write(func() error { return p.framer.WritePing(false, [8]byte{byte(i)}) }))
		select {
		case <-p.acks:
			acked++
		case goAway = <-p.goAway:
			return acked, goAway
		case <-p.done:
			return acked, "connection closed"
		case <-time.After(5 * time.Second):
			t.Fatalf("ping %d: no answer", i)
		}
		<-ticker.C // the client's ping interval, not a wait for an event
	}
	return acked, ""
}

// The servers' keepalive policy lets a Client ping every KeepaliveTime, with
// no call in flight; gRPC's default policy (5 minutes, no pings without
// calls) answers the third such ping with GOAWAY "too_many_pings". Run 100
// times faster than real: a client pinging every MinKeepaliveTime/100 a
// server with the policy's figures divided by 100.
func TestServerKeepalivePolicyAllowsClientPings(t *testing.T) {
	const speedup = 100
	require.Less(t, ServerKeepaliveMinTime, MinKeepaliveTime,
		"the servers' MinTime must be below the least client ping interval")
	tests := []struct {
		name       string
		opts       []grpc.ServerOption
		wantGoAway string
	}{
		{name: "proglog policy", opts: serverKeepaliveOptions(speedup)},
		{name: "gRPC default policy", wantGoAway: "too_many_pings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			srv := grpc.NewServer(tt.opts...)
			served := make(chan error, 1)
			go func() { served <- srv.Serve(lis) }()
			t.Cleanup(func() {
				srv.Stop()
				require.NoError(t, <-served)
			})

			const pings = 6
			acked, goAway := newRawPinger(t, lis.Addr().String()).pingEvery(t, MinKeepaliveTime/speedup, pings)
			require.Equal(t, tt.wantGoAway, goAway, "GOAWAY after %d acknowledged pings", acked)
			if tt.wantGoAway == "" {
				require.Equal(t, pings, acked, "pings acknowledged")
			}
		})
	}
}

// A server with ServerKeepaliveOptions serves a Client with its default
// keepalive: the options are accepted together, and calls work.
func TestClientWorksWithServerKeepaliveOptions(t *testing.T) {
	cluster := newFakeClusterWith(t, 1, ServerKeepaliveOptions()...)
	client := newTestClient(t, Config{Seeds: cluster.addrs()})
	off, err := client.Produce(testContext(t), []byte("v"))
	require.NoError(t, err)
	require.Equal(t, uint64(0), off)
}

func TestKeepaliveConfigValidation(t *testing.T) {
	seeds := []string{"127.0.0.1:1"}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{Seeds: seeds, Insecure: true}},
		{name: "keepalive at gRPC's minimum", cfg: Config{Seeds: seeds, Insecure: true, KeepaliveTime: MinKeepaliveTime}},
		{name: "keepalive below gRPC's minimum", cfg: Config{Seeds: seeds, Insecure: true, KeepaliveTime: time.Second},
			wantErr: "KeepaliveTime 1s is below 10s"},
		{name: "negative keepalive timeout", cfg: Config{Seeds: seeds, Insecure: true, KeepaliveTimeout: -time.Second},
			wantErr: "KeepaliveTimeout -1s is negative"},
		{name: "negative attempt timeout", cfg: Config{Seeds: seeds, Insecure: true, AttemptTimeout: -time.Second},
			wantErr: "AttemptTimeout -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = zaptest.NewLogger(t)
			c, err := New(tt.cfg)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr, "New(%s)", tt.name)
				return
			}
			require.NoError(t, err)
			require.NoError(t, c.Close())
		})
	}
}

// A call whose attempts keep timing out ends at its deadline with an error
// that keeps the gRPC code and names the deadline.
func TestAttemptTimeoutError(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client := newTestClient(t, Config{Seeds: cluster.addrs(), AttemptTimeout: 100 * time.Millisecond, RetryTimeout: 350 * time.Millisecond})
	_, err := client.Produce(testContext(t), []byte("warm-up"))
	require.NoError(t, err)
	cluster.servers[0].freeze()
	_, err = client.Produce(context.Background(), []byte("v"))
	require.Equal(t, codes.DeadlineExceeded, status.Code(err), "Produce on a frozen leader = %v", err)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Produce on a frozen leader = %v", err)
	require.GreaterOrEqual(t, cluster.servers[0].calls(api.Log_Produce_FullMethodName), 3,
		"Produce calls on the frozen leader: want the warm-up and at least two attempts")
}
