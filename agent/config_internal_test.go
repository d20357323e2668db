package agent

import (
	"testing"

	"github.com/stretchr/testify/require"
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
