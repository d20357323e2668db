package agent

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/server/telemetry"
)

// TestStartJoinAddrsSkipsOwnAddress checks that a node given the same join
// list as every other node (a StatefulSet's pods) does not try to join
// itself, by its bind address or by its advertised name, and keeps the rest
// in order.
func TestStartJoinAddrsSkipsOwnAddress(t *testing.T) {
	cfg := Config{
		BindAddr:      "10.0.0.5:8301",
		AdvertiseHost: "proglog-0.proglog-headless.default.svc.cluster.local",
		StartJoinAddrs: []string{
			"proglog-0.proglog-headless.default.svc.cluster.local:8301",
			"proglog-1.proglog-headless.default.svc.cluster.local:8301",
			"10.0.0.5:8301",
			"PROGLOG-0.proglog-headless.default.svc.cluster.local:8301",
			"proglog-0.proglog-headless.default.svc.cluster.local:9301",
		},
	}
	require.Equal(t, []string{
		"proglog-1.proglog-headless.default.svc.cluster.local:8301",
		"proglog-0.proglog-headless.default.svc.cluster.local:9301",
	}, cfg.startJoinAddrs())

	cfg.AdvertiseHost = ""
	require.Equal(t, []string{
		"proglog-0.proglog-headless.default.svc.cluster.local:8301",
		"proglog-1.proglog-headless.default.svc.cluster.local:8301",
		"PROGLOG-0.proglog-headless.default.svc.cluster.local:8301",
		"proglog-0.proglog-headless.default.svc.cluster.local:9301",
	}, cfg.startJoinAddrs())
}

// TestWritePathSettings: the group commit and stream window settings reach
// the log's and the server's configurations (0 stays "the default").
func TestWritePathSettings(t *testing.T) {
	cfg := Config{GroupCommitInFlight: 2, GroupCommitLinger: -1, ProduceStreamWindow: 64}
	dc := cfg.distributedConfig()
	require.Equal(t, 2, dc.GroupCommit.MaxInFlight)
	require.Equal(t, time.Duration(-1), dc.GroupCommit.Linger)

	metrics, err := telemetry.NewMetrics(telemetry.MetricsConfig{})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	a := &Agent{cfg: cfg, obs: &observability{metrics: metrics}, rpcListener: ln}
	require.Equal(t, 64, a.serverConfig(nil).ProduceStreamWindow)

	var defaults Config
	require.Zero(t, defaults.distributedConfig().GroupCommit)
	a.cfg = defaults
	require.Zero(t, a.serverConfig(nil).ProduceStreamWindow)
}
