package discovery

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// waitFor bounds every wait on gossip. ProfileLocal converges in well under a
// second on loopback; the margin is for the race detector on a busy machine.
const (
	waitFor = 15 * time.Second
	tick    = 20 * time.Millisecond
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recordingHandler records every call it receives, in order, and returns err
// (nil by default) from each.
type recordingHandler struct {
	mu    sync.Mutex // guards calls
	calls []string   // "join <name> <addr>" or "leave <name>"
	err   error
}

func (h *recordingHandler) Join(name, addr string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "join "+name+" "+addr)
	return h.err
}

func (h *recordingHandler) Leave(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "leave "+name)
	return h.err
}

// Calls returns a copy of the calls so far.
func (h *recordingHandler) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// Joined returns the last address each member was joined with.
func (h *recordingHandler) Joined() map[string]string {
	joined := map[string]string{}
	for _, c := range h.Calls() {
		if f := strings.Fields(c); f[0] == "join" {
			joined[f[1]] = f[2]
		}
	}
	return joined
}

// Left reports whether Leave(name) was called.
func (h *recordingHandler) Left(name string) bool {
	for _, c := range h.Calls() {
		if c == "leave "+name {
			return true
		}
	}
	return false
}

// NamedIn returns the calls that name member.
func (h *recordingHandler) NamedIn(member string) []string {
	var named []string
	for _, c := range h.Calls() {
		if f := strings.Fields(c); f[1] == member {
			named = append(named, c)
		}
	}
	return named
}

// rpcAddr is the fake RPC address test member name advertises.
func rpcAddr(name string) string { return "127.0.0.1:9" + strings.TrimPrefix(name, "n") + "00" }

// testConfig is a ProfileLocal config on a free loopback port.
func testConfig(t *testing.T, name string, joinAddrs ...string) Config {
	return Config{
		NodeName:       name,
		BindAddr:       "127.0.0.1:0",
		Tags:           map[string]string{RPCAddrTag: rpcAddr(name)},
		StartJoinAddrs: joinAddrs,
		Profile:        ProfileLocal,
		Logger:         zaptest.NewLogger(t),
	}
}

// startMember starts member name, joined through joinAddrs, closed at the end
// of the test.
func startMember(t *testing.T, name string, h Handler, joinAddrs ...string) *Membership {
	t.Helper()
	m, err := New(h, testConfig(t, name, joinAddrs...))
	require.NoError(t, err, "New(%s)", name)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// startCluster starts n members, n1 first and the others joining through it.
func startCluster(t *testing.T, handlers ...*recordingHandler) []*Membership {
	t.Helper()
	members := make([]*Membership, len(handlers))
	for i, h := range handlers {
		var join []string
		if i > 0 {
			join = []string{members[0].Addr()}
		}
		members[i] = startMember(t, fmt.Sprintf("n%d", i+1), h, join...)
	}
	return members
}

// statusOf returns the status m sees member name in, StatusNone if unknown.
func statusOf(m *Membership, name string) serf.MemberStatus {
	for _, member := range m.Members() {
		if member.Name == name {
			return member.Status
		}
	}
	return serf.StatusNone
}

func TestMembershipThreeMembersSeeEachOther(t *testing.T) {
	handlers := []*recordingHandler{{}, {}, {}}
	members := startCluster(t, handlers...)

	for i, m := range members {
		_, port, err := net.SplitHostPort(m.Addr())
		require.NoError(t, err)
		require.NotEqual(t, "0", port, "Addr() = %s, want the bound port", m.Addr())

		self := fmt.Sprintf("n%d", i+1)
		want := map[string]string{}
		for j := range members {
			if other := fmt.Sprintf("n%d", j+1); other != self {
				want[other] = rpcAddr(other)
			}
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Equal(c, want, handlers[i].Joined(), "%s: joined members", self)
			alive := 0
			for _, member := range m.Members() {
				if member.Status == serf.StatusAlive {
					alive++
				}
			}
			assert.Equal(c, len(members), alive, "%s: alive members", self)
		}, waitFor, tick)
		require.Empty(t, handlers[i].NamedIn(self), "%s: handler calls about itself", self)
	}
}

func TestMembershipLeaveIsReported(t *testing.T) {
	handlers := []*recordingHandler{{}, {}, {}}
	members := startCluster(t, handlers...)
	for i := range 2 {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Contains(c, handlers[i].Joined(), "n3")
		}, waitFor, tick, "n%d never saw n3 join", i+1)
	}

	require.NoError(t, members[2].Leave())
	require.NoError(t, members[2].Leave(), "second Leave")

	for i := range 2 {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.True(c, handlers[i].Left("n3"), "n%d: Leave(n3) called", i+1)
			assert.Equal(c, serf.StatusLeft, statusOf(members[i], "n3"), "n%d: status of n3", i+1)
		}, waitFor, tick)
		require.False(t, handlers[i].Left(fmt.Sprintf("n%d", 2-i)), "n%d: a member still alive was reported left", i+1)
	}
	require.Empty(t, handlers[2].NamedIn("n3"), "n3: handler calls about itself")
}

func TestMembershipFailureIsReported(t *testing.T) {
	handlers := []*recordingHandler{{}, {}, {}}
	members := startCluster(t, handlers...)
	for i := range 2 {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Contains(c, handlers[i].Joined(), "n3")
		}, waitFor, tick, "n%d never saw n3 join", i+1)
	}

	// A crash: Serf stops without telling anyone.
	require.NoError(t, members[2].serf.Shutdown())

	for i := range 2 {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.True(c, handlers[i].Left("n3"), "n%d: Leave(n3) called", i+1)
			assert.Equal(c, serf.StatusFailed, statusOf(members[i], "n3"), "n%d: status of n3", i+1)
		}, waitFor, tick)
	}
}

func TestMembershipHandlerErrorsDoNotStopEventLoop(t *testing.T) {
	failing := &recordingHandler{err: errors.New("not the leader")}
	members := startCluster(t, failing, &recordingHandler{}, &recordingHandler{})

	require.NoError(t, members[2].Leave())

	// Every call failed, yet each event after the first was still handled.
	// n2 and n3 join within a millisecond of each other: n1 may learn of
	// them in either order (CI once saw n3 first), and of n3's leave after.
	joins := []string{"join n2 " + rpcAddr("n2"), "join n3 " + rpcAddr("n3")}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		calls := failing.Calls()
		if !assert.Len(c, calls, 3, "calls: %v", calls) {
			return
		}
		assert.ElementsMatch(c, joins, calls[:2])
		assert.Equal(c, "leave n3", calls[2])
	}, waitFor, tick)
}

func TestMembershipCloseIsIdempotentAndLeaksNothing(t *testing.T) {
	before := goleak.IgnoreCurrent()
	h1, h2 := &recordingHandler{}, &recordingHandler{}
	m1, err := New(h1, testConfig(t, "n1"))
	require.NoError(t, err)
	m2, err := New(h2, testConfig(t, "n2", m1.Addr()))
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, h1.Joined(), "n2")
	}, waitFor, tick)

	// m2 leaves explicitly, then closes; m1 closes without leaving first.
	require.NoError(t, m2.Leave())
	for i := range 2 {
		require.NoError(t, m2.Close(), "m2.Close() #%d", i+1)
		require.NoError(t, m1.Close(), "m1.Close() #%d", i+1)
	}
	require.ErrorIs(t, m1.Leave(), ErrClosed, "Leave after Close")
	require.NotEmpty(t, m1.Members(), "Members after Close")

	goleak.VerifyNone(t, before)
}

func TestNewJoinFailsWithClearError(t *testing.T) {
	before := goleak.IgnoreCurrent()
	// A loopback port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())

	m, err := New(&recordingHandler{}, testConfig(t, "n1", dead))
	require.ErrorIs(t, err, ErrJoin, "New with a dead start-join address")
	require.Nil(t, m)
	require.Contains(t, err.Error(), dead, "the error names the address tried")
	require.NotContains(t, err.Error(), "\n", "the error fits on one line")

	goleak.VerifyNone(t, before)
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	valid := func() Config {
		return Config{NodeName: "n1", BindAddr: "127.0.0.1:0", Tags: map[string]string{RPCAddrTag: "127.0.0.1:8400"}}
	}
	tests := []struct {
		name      string
		change    func(*Config)
		wantField string
	}{
		{"no node name", func(c *Config) { c.NodeName = "" }, "NodeName"},
		{"bind host not an IP", func(c *Config) { c.BindAddr = "localhost:0" }, "BindAddr"},
		{"bind without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, "BindAddr"},
		{"bind port out of range", func(c *Config) { c.BindAddr = "127.0.0.1:70000" }, "BindAddr"},
		{"advertise without host", func(c *Config) { c.AdvertiseAddr = ":8401" }, "AdvertiseAddr"},
		{"no tags", func(c *Config) { c.Tags = nil }, "Tags[rpc_addr]"},
		{"empty rpc_addr", func(c *Config) { c.Tags[RPCAddrTag] = "" }, "Tags[rpc_addr]"},
		{"rpc_addr without port", func(c *Config) { c.Tags[RPCAddrTag] = "127.0.0.1" }, "Tags[rpc_addr]"},
		{"empty start-join address", func(c *Config) { c.StartJoinAddrs = []string{""} }, "StartJoinAddrs[0]"},
		{"unknown profile", func(c *Config) { c.Profile = "fast" }, "Profile"},
		{"negative retry-join interval", func(c *Config) { c.RetryJoinInterval = -time.Second }, "RetryJoinInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.change(&cfg)
			m, err := New(&recordingHandler{}, cfg)
			require.ErrorIs(t, err, ErrInvalidConfig, "New(%+v)", cfg)
			require.Nil(t, m)
			require.Contains(t, err.Error(), tt.wantField)
		})
	}
	t.Run("nil handler", func(t *testing.T) {
		_, err := New(nil, valid())
		require.ErrorIs(t, err, ErrInvalidConfig)
	})
}

func TestNewLogsSerfThroughZap(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	cfg := testConfig(t, "n1")
	cfg.Logger = zap.New(core)
	m, err := New(&recordingHandler{}, cfg)
	require.NoError(t, err)
	require.NoError(t, m.Close())

	for _, name := range []string{"discovery.serf", "discovery.memberlist"} {
		entries := logs.Filter(func(e observer.LoggedEntry) bool { return e.LoggerName == name }).All()
		require.NotEmpty(t, entries, "no log entries from %s", name)
		require.Equal(t, "n1", entries[0].ContextMap()["node"], "%s: node field", name)
		require.NotContains(t, entries[0].Message, "[", "%s: level prefix left in the message", name)
	}
	// Serf logs its own join as "[INFO] serf: EventMemberJoin: n1 127.0.0.1".
	joins := logs.FilterLoggerName("discovery.serf").FilterMessageSnippet("EventMemberJoin: n1").All()
	require.NotEmpty(t, joins)
	require.Equal(t, zap.InfoLevel, joins[0].Level)
}

func TestMembershipLogsNothingAfterClose(t *testing.T) {
	before := goleak.IgnoreCurrent()
	// n1 logs to an observer and signals when a probe of n2 has failed.
	probeFailed := make(chan struct{}, 1)
	core, logs := observer.New(zap.DebugLevel)
	core = zapcore.RegisterHooks(core, func(e zapcore.Entry) error {
		if strings.HasPrefix(e.Message, "Failed UDP ping: n2") {
			select {
			case probeFailed <- struct{}{}:
			default:
			}
		}
		return nil
	})
	cfg := testConfig(t, "n1")
	cfg.Logger = zap.New(core)
	h1 := &recordingHandler{}
	m1, err := New(h1, cfg)
	require.NoError(t, err)
	m2, err := New(&recordingHandler{}, testConfig(t, "n2", m1.Addr()))
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, h1.Joined(), "n2")
	}, waitFor, tick)

	// n1 leaves first so that its Close is quick; memberlist keeps probing
	// n2, which then crashes. Close n1 in the middle of a failing probe: the
	// probe outlives Close and logs its verdict afterwards.
	require.NoError(t, m1.Leave())
	require.NoError(t, m2.serf.Shutdown())
	select {
	case <-probeFailed:
	case <-time.After(waitFor):
		t.Fatalf("n1 never failed to probe n2")
	}
	require.NoError(t, m1.Close())
	logged := logs.Len()
	// n2 crashed: its Leave fails, but Close still stops its event loop.
	require.Error(t, m2.Close(), "Close after a crash")

	// Once memberlist's goroutines have all ended, nothing more was logged.
	goleak.VerifyNone(t, before)
	require.Equal(t, logged, logs.Len(), "entries logged after Close: %v", messages(logs.All()[logged:]))
}
