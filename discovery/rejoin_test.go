package discovery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSnapshotMembers(t *testing.T) {
	tests := []struct {
		name             string
		snapshot         string // "" with noFile: no file at all
		noFile           bool
		rejoinAfterLeave bool
		want             []string
	}{
		{name: "no file", noFile: true, want: nil},
		{name: "empty", snapshot: "", want: nil},
		{
			name:     "alive and not-alive",
			snapshot: "alive: n1 127.0.0.1:1\nalive: n2 127.0.0.1:2\nclock: 5\nnot-alive: n1\nalive: n3 127.0.0.1:3\n",
			want:     []string{"n2/127.0.0.1:2", "n3/127.0.0.1:3"},
		},
		{
			name:     "last address wins",
			snapshot: "alive: n2 127.0.0.1:2\nalive: n2 127.0.0.1:22\n",
			want:     []string{"n2/127.0.0.1:22"},
		},
		{
			name:     "self left out",
			snapshot: "alive: self 127.0.0.1:9\nalive: n2 127.0.0.1:2\n",
			want:     []string{"n2/127.0.0.1:2"},
		},
		{
			name:     "name with a space",
			snapshot: "alive: node two 127.0.0.1:2\n",
			want:     []string{"node two/127.0.0.1:2"},
		},
		{
			name:     "leave forgets everyone",
			snapshot: "alive: n2 127.0.0.1:2\nleave\n",
			want:     nil,
		},
		{
			name:     "members after a leave count",
			snapshot: "alive: n2 127.0.0.1:2\nleave\nalive: n3 127.0.0.1:3\n",
			want:     []string{"n3/127.0.0.1:3"},
		},
		{
			name:             "leave ignored with RejoinAfterLeave",
			snapshot:         "alive: n2 127.0.0.1:2\nleave\nalive: n3 127.0.0.1:3\n",
			rejoinAfterLeave: true,
			want:             []string{"n2/127.0.0.1:2", "n3/127.0.0.1:3"},
		},
		{
			name:     "unknown and torn lines skipped",
			snapshot: "# comment\ncoordinate: x\nalive: broken\nalive: n2 127.0.0.1:2\nalive: n3 127.0",
			want:     []string{"n2/127.0.0.1:2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "local.snapshot")
			if !tt.noFile {
				require.NoError(t, os.WriteFile(path, []byte(tt.snapshot), 0o644))
			}
			got, err := snapshotMembers(path, tt.rejoinAfterLeave, "self")
			require.NoError(t, err)
			require.Equal(t, tt.want, got, "snapshotMembers(%q)", tt.snapshot)
		})
	}
	t.Run("no path", func(t *testing.T) {
		got, err := snapshotMembers("", true, "self")
		require.NoError(t, err)
		require.Empty(t, got)
	})
}

// freeAddr returns a loopback host:port nobody listens on, for a member that
// must come back on the same address after a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	m, err := New(&recordingHandler{}, testConfig(t, "probe"))
	require.NoError(t, err)
	addr := m.Addr()
	require.NoError(t, m.Close())
	return addr
}

// snapshotConfig is testConfig on bindAddr with a snapshot in dir, kept
// across a graceful leave.
func snapshotConfig(t *testing.T, name, dir, bindAddr string, joinAddrs ...string) Config {
	cfg := testConfig(t, name, joinAddrs...)
	cfg.BindAddr = bindAddr
	cfg.SnapshotPath = filepath.Join(dir, name, "serf", "local.snapshot")
	cfg.RejoinAfterLeave = true
	return cfg
}

// startSnapshotCluster starts n1, n2 and n3 with snapshots in dir on fixed
// addresses, n2 and n3 joining through n1, and waits until each sees the
// other two alive. It returns their configs, for restarts.
func startSnapshotCluster(t *testing.T, dir string, handlers []*recordingHandler) ([]Config, []*Membership) {
	t.Helper()
	cfgs := make([]Config, len(handlers))
	members := make([]*Membership, len(handlers))
	for i, h := range handlers {
		name := "n" + string(rune('1'+i))
		var join []string
		if i > 0 {
			join = []string{cfgs[0].BindAddr}
		}
		cfgs[i] = snapshotConfig(t, name, dir, freeAddr(t), join...)
		m, err := New(h, cfgs[i])
		require.NoError(t, err, "New(%s)", name)
		t.Cleanup(func() { _ = m.Close() })
		members[i] = m
	}
	for i, m := range members {
		requireSeesAlive(t, m, cfgs, i)
	}
	return cfgs, members
}

// requireSeesAlive waits until m (member i of cfgs) sees every member of
// cfgs alive.
func requireSeesAlive(t *testing.T, m *Membership, cfgs []Config, i int) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, other := range cfgs {
			assert.Equal(c, serf.StatusAlive, statusOf(m, other.NodeName), "%s: status of %s",
				cfgs[i].NodeName, other.NodeName)
		}
	}, waitFor, tick)
}

// rejoinedAfterLeave reports whether h was told that name left and then,
// later, that it joined again.
func rejoinedAfterLeave(h *recordingHandler, name string) bool {
	left := false
	for _, call := range h.NamedIn(name) {
		switch {
		case strings.HasPrefix(call, "leave "):
			left = true
		case left && strings.HasPrefix(call, "join "):
			return true
		}
	}
	return false
}

func TestMembershipRestartedAfterLeaveRejoinsFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	deadAddr := freeAddr(t)
	tests := []struct {
		name      string
		joinAddrs []string // n3's StartJoinAddrs on restart
	}{
		// The operator restarts the node with the command line it was first
		// started with: a bootstrap node has no start-join address.
		{"no start-join address", nil},
		// A node whose start-join address is down (the node it first joined
		// through has been stopped) must not fail.
		{"start-join address down", []string{deadAddr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handlers := []*recordingHandler{{}, {}, {}}
			cfgs, members := startSnapshotCluster(t, filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")), handlers)

			// n3 stops gracefully: the others see it leave.
			require.NoError(t, members[2].Close())
			for i := range 2 {
				require.EventuallyWithT(t, func(c *assert.CollectT) {
					assert.True(c, handlers[i].Left("n3"), "n%d: Leave(n3) called", i+1)
				}, waitFor, tick)
			}
			// What Serf wrote: n3's leave is recorded, and only
			// RejoinAfterLeave keeps its members.
			forgotten, err := snapshotMembers(cfgs[2].SnapshotPath, false, "n3")
			require.NoError(t, err)
			require.Empty(t, forgotten, "snapshot members without RejoinAfterLeave")
			kept, err := snapshotMembers(cfgs[2].SnapshotPath, true, "n3")
			require.NoError(t, err)
			require.Equal(t, []string{"n1/" + cfgs[0].BindAddr, "n2/" + cfgs[1].BindAddr}, kept,
				"snapshot members with RejoinAfterLeave")

			restart := cfgs[2]
			restart.StartJoinAddrs = tt.joinAddrs
			h3 := &recordingHandler{}
			m3, err := New(h3, restart)
			require.NoError(t, err, "New(n3) restarted with StartJoinAddrs %v", tt.joinAddrs)
			t.Cleanup(func() { _ = m3.Close() })

			requireSeesAlive(t, m3, cfgs, 2)
			for i := range 2 {
				require.EventuallyWithT(t, func(c *assert.CollectT) {
					assert.True(c, rejoinedAfterLeave(handlers[i], "n3"), "n%d: Join(n3) after Leave(n3): %v",
						i+1, handlers[i].NamedIn("n3"))
				}, waitFor, tick)
			}
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				assert.Equal(c, map[string]string{"n1": rpcAddr("n1"), "n2": rpcAddr("n2")}, h3.Joined())
			}, waitFor, tick)
		})
	}
}

func TestNewWithoutSnapshotMembersStillFailsOnDeadStartJoin(t *testing.T) {
	deadAddr := freeAddr(t)
	tests := []struct {
		name   string
		change func(t *testing.T, cfg *Config)
	}{
		{"no snapshot", func(*testing.T, *Config) {}},
		{"empty snapshot", func(t *testing.T, cfg *Config) {
			cfg.SnapshotPath = filepath.Join(t.TempDir(), "local.snapshot")
			cfg.RejoinAfterLeave = true
		}},
		{"snapshot after a leave, no RejoinAfterLeave", func(t *testing.T, cfg *Config) {
			cfg.SnapshotPath = filepath.Join(t.TempDir(), "local.snapshot")
			require.NoError(t, os.WriteFile(cfg.SnapshotPath, []byte("alive: n2 "+deadAddr+"\nleave\n"), 0o644))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "n1", deadAddr)
			tt.change(t, &cfg)
			m, err := New(&recordingHandler{}, cfg)
			require.ErrorIs(t, err, ErrJoin, "New with a dead start-join address")
			require.Nil(t, m)
		})
	}
}

// A member that was part of a cluster (Rejoin: its Raft state says so) but
// whose snapshot lost the members' lines (Serf buffers it; a SIGKILL soon
// after the join loses them) does not fail on a start-join address that is
// down: it keeps trying it, and joins once it answers.
func TestMembershipRejoinKeepsTryingADeadStartJoin(t *testing.T) {
	dir := t.TempDir()
	addr1 := freeAddr(t)
	cfg2 := snapshotConfig(t, "n2", dir, freeAddr(t), addr1)
	cfg2.Rejoin = true
	h2 := &recordingHandler{}
	m2, err := New(h2, cfg2)
	require.NoError(t, err, "New with Rejoin and a dead start-join address")
	t.Cleanup(func() { _ = m2.Close() })

	cfg1 := snapshotConfig(t, "n1", dir, addr1)
	m1, err := New(&recordingHandler{}, cfg1)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m1.Close() })
	cfgs := []Config{cfg1, cfg2}
	requireSeesAlive(t, m2, cfgs, 1)
	requireSeesAlive(t, m1, cfgs, 0)
}

// A whole cluster stopped and started again in the wrong order: n2 comes
// back first, while n1, which it joins through, is still down, and n1's
// snapshot names nobody (n2 left before it). n2 must wait for n1, not fail,
// and find it once it is back.
func TestMembershipWholeClusterRestartedInAnyOrder(t *testing.T) {
	dir := t.TempDir()
	h1, h2 := &recordingHandler{}, &recordingHandler{}
	cfg1 := snapshotConfig(t, "n1", dir, freeAddr(t))
	m1, err := New(h1, cfg1)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m1.Close() })
	cfg2 := snapshotConfig(t, "n2", dir, freeAddr(t), cfg1.BindAddr)
	// As the agent sets it for a node with Raft state: Serf writes the
	// snapshot through a buffer, and n2's line for n1 could still be in it
	// when n2 stopped (this test failed so once in CI).
	cfg2.Rejoin = true
	m2, err := New(h2, cfg2)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m2.Close() })
	cfgs := []Config{cfg1, cfg2}
	// Both, so that n2's snapshot has n1 (Serf records a member as it
	// reports it, a moment after it shows it in Members).
	requireSeesAlive(t, m1, cfgs, 0)
	requireSeesAlive(t, m2, cfgs, 1)

	require.NoError(t, m2.Close())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.True(c, h1.Left("n2"), "n1: Leave(n2) called")
	}, waitFor, tick)
	require.NoError(t, m1.Close())

	// n2 first: its start-join address (n1) and its snapshot's only member
	// (n1 again) are down.
	h2 = &recordingHandler{}
	m2, err = New(h2, cfg2)
	require.NoError(t, err, "New(n2) while n1 is down")
	t.Cleanup(func() { _ = m2.Close() })
	require.Equal(t, serf.StatusNone, statusOf(m2, "n1"), "n2 sees n1 while n1 is down")

	// n1 next, as it was first started: no start-join address, and a
	// snapshot that names nobody.
	h1 = &recordingHandler{}
	m1, err = New(h1, cfg1)
	require.NoError(t, err, "New(n1)")
	t.Cleanup(func() { _ = m1.Close() })

	requireSeesAlive(t, m1, cfgs, 0)
	requireSeesAlive(t, m2, cfgs, 1)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, h1.Joined(), "n2")
		assert.Contains(c, h2.Joined(), "n1")
	}, waitFor, tick)
}

// Leave and Close stop a member that is still trying to rejoin, and Close
// leaves nothing running (TestMain checks for leaks).
func TestMembershipStopsRetryingOnLeave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serf", "local.snapshot")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("alive: n2 "+freeAddr(t)+"\n"), 0o644))
	cfg := testConfig(t, "n1")
	cfg.SnapshotPath = path
	m, err := New(&recordingHandler{}, cfg)
	require.NoError(t, err)

	m.mu.Lock()
	retrying := m.retryStop != nil
	m.mu.Unlock()
	require.True(t, retrying, "an isolated member with snapshot members is retrying")
	require.NoError(t, m.Leave())
	m.mu.Lock()
	retrying = m.retryStop != nil
	m.mu.Unlock()
	require.False(t, retrying, "still retrying after Leave")
	require.NoError(t, m.Close())
}

// A restarted member whose snapshot names a member that was restarted too,
// and so does not know it, and one that remembers it as gone: the latter
// ignores its gossip until told a newer incarnation, which it learns only
// from an exchange with it. Every member must see it back well before the
// next periodic push/pull (5 s under ProfileLocal) would have repaired that.
func TestMembershipRestartedMemberIsSeenByEveryMemberAtOnce(t *testing.T) {
	handlers := []*recordingHandler{{}, {}, {}}
	cfgs, members := startSnapshotCluster(t, t.TempDir(), handlers)

	require.NoError(t, members[2].Close())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.True(c, handlers[0].Left("n3"), "n1: Leave(n3) called")
		assert.True(c, handlers[1].Left("n3"), "n2: Leave(n3) called")
	}, waitFor, tick)
	require.NoError(t, members[0].Close())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.True(c, handlers[1].Left("n1"), "n2: Leave(n1) called")
	}, waitFor, tick)

	// n1 comes back and learns n3 only as gone, which it ignores: it does
	// not know n3. It is the first member of n3's snapshot, in order.
	m1, err := New(&recordingHandler{}, cfgs[0])
	require.NoError(t, err, "New(n1)")
	t.Cleanup(func() { _ = m1.Close() })
	requireSeesAlive(t, m1, cfgs[:2], 0)
	require.Equal(t, serf.StatusNone, statusOf(m1, "n3"), "n1: status of n3")

	m3, err := New(&recordingHandler{}, cfgs[2])
	require.NoError(t, err, "New(n3)")
	t.Cleanup(func() { _ = m3.Close() })
	for i, m := range []*Membership{m1, members[1], m3} {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Equal(c, serf.StatusAlive, statusOf(m, "n3"), "n%d: status of n3", i+1)
		}, 3*time.Second, tick)
	}
}

func TestRejoinTargets(t *testing.T) {
	got := rejoinTargets([]string{"127.0.0.1:1", "127.0.0.1:2"},
		[]string{"n1/127.0.0.1:1", "n3/127.0.0.1:3", "a/b/127.0.0.1:4"})
	want := []string{"127.0.0.1:1", "127.0.0.1:2", "n3/127.0.0.1:3", "a/b/127.0.0.1:4"}
	require.Equal(t, want, got, "rejoinTargets")
}
