package telemetry_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/server/telemetry"
)

// Consumer-group lag has bounded series: past MaxGroupSeries (group,
// topic) pairs the rest are summed per topic under "(other)"; retention's
// deleted bytes are a counter.
func TestStatsCollectorGroupsAndRetention(t *testing.T) {
	var groups []telemetry.GroupStats
	for k := range telemetry.MaxGroupSeries + 50 {
		groups = append(groups, telemetry.GroupStats{Group: fmt.Sprintf("g%03d", k), Topic: "default", Lag: 2})
	}
	c := telemetry.NewStatsCollector(telemetry.StatsSources{
		Groups:                func() ([]telemetry.GroupStats, error) { return groups, nil },
		RetentionDeletedBytes: func() uint64 { return 4096 },
	})
	require.Equal(t, telemetry.MaxGroupSeries+1, collectCount(t, c, "proglog_consumer_group_lag"))
	text := collectText(t, c)
	require.Contains(t, text, `proglog_consumer_group_lag{group="(other)",topic="default"} 100`)
	require.Contains(t, text, `proglog_consumer_group_lag{group="g000",topic="default"} 2`)
	require.Contains(t, text, "# TYPE proglog_retention_deleted_bytes_total counter\nproglog_retention_deleted_bytes_total 4096")
	require.False(t, strings.Contains(text, `group="g120"`))
}
