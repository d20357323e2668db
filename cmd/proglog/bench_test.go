package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBenchClaim(t *testing.T) {
	b := &bench{settings: benchSettings{records: 10}}
	var got [][2]int64
	for {
		first, n := b.claim(4)
		if n == 0 {
			break
		}
		got = append(got, [2]int64{first, int64(n)})
	}
	require.Equal(t, [][2]int64{{0, 4}, {4, 4}, {8, 2}}, got)
	require.False(t, b.remaining())
}

func TestLatencyHistogram(t *testing.T) {
	a, b := newLatencyHistogram(), newLatencyHistogram()
	for i := 1; i <= 100; i++ {
		a.record(time.Duration(i) * time.Millisecond)
	}
	b.record(time.Hour) // over the range: recorded as the maximum
	b.record(0)         // under the range: recorded as the minimum
	a.merge(b)
	require.EqualValues(t, 102, a.h.TotalCount())
	require.InDelta(t, 50, a.quantileMS(50), 1)
	require.InDelta(t, 99, a.quantileMS(99), 1.5)
	require.InDelta(t, float64(histogramMaxMicros)/1000, a.quantileMS(100), float64(histogramMaxMicros)/1000*0.01)
}

func TestBenchResult(t *testing.T) {
	h := newLatencyHistogram()
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond * 10) // 0.01 ms .. 10 ms
	}
	r := newBenchResult(benchBatch, 2000, 5, 2*time.Second, 500, h)
	require.Equal(t, 1000.0, r.RecordsPerSec)
	require.Equal(t, 0.5, r.MBPerSec) // 2000 records * 500 B / 1e6 / 2 s
	require.InDelta(t, 5, r.LatencyMS.P50, 0.05)
	require.InDelta(t, 9, r.LatencyMS.P90, 0.05)
	require.InDelta(t, 9.9, r.LatencyMS.P99, 0.05)
	require.InDelta(t, 10, r.LatencyMS.Max, 0.05)

	// The JSON object of the issue, key for key.
	var buf strings.Builder
	require.NoError(t, writeReport(&buf, benchSettings{json: true}, r))
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(buf.String()), &got))
	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		return ks
	}
	require.ElementsMatch(t, []string{"mode", "records", "errors", "seconds", "records_per_sec", "mb_per_sec", "latency_ms"}, keys(got))
	latency, ok := got["latency_ms"].(map[string]any)
	require.True(t, ok, "latency_ms is %T", got["latency_ms"])
	require.ElementsMatch(t, []string{"p50", "p90", "p99", "p999", "max"}, keys(latency))
	require.Equal(t, "batch", got["mode"])
	require.EqualValues(t, 2000, got["records"])
	require.EqualValues(t, 5, got["errors"])
	require.Equal(t, 1, strings.Count(buf.String(), "\n"), "one line")

	// Nothing measured: zeros, no division by zero.
	empty := newBenchResult(benchProduce, 0, 0, 0, 100, newLatencyHistogram())
	require.Equal(t, benchResult{Mode: benchProduce}, empty)
}

func TestBenchTextReport(t *testing.T) {
	h := newLatencyHistogram()
	h.record(2 * time.Millisecond)
	r := newBenchResult(benchStream, 100, 0, time.Second, 10, h)
	var buf strings.Builder
	require.NoError(t, writeReport(&buf, benchSettings{mode: benchStream, records: 100, size: 10, concurrency: 2, batch: 8}, r))
	out := buf.String()
	for _, want := range []string{"mode stream", "100 records, 0 errors", "100 records/s", "p50 2.", "p99.9", "max"} {
		require.Contains(t, out, want)
	}
}

func TestProgressLine(t *testing.T) {
	tests := []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{0, 100, 0, "[                              ] 0/100 records  0/s"},
		{50, 100, time.Second, "[===============               ] 50/100 records  50/s"},
		{100, 100, 2 * time.Second, "[==============================] 100/100 records  50/s"},
		{120, 100, time.Second, "[==============================] 120/100 records  120/s"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, progressLine(tt.done, tt.total, tt.elapsed), "progressLine(%d, %d, %v)", tt.done, tt.total, tt.elapsed)
	}
}

func TestRandomValue(t *testing.T) {
	v := randomValue(1000)
	require.Len(t, v, 1000)
	for i, c := range v {
		require.True(t, (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'), "byte %d = %q is not a letter", i, c)
	}
}

func TestBenchNoCoalesce(t *testing.T) {
	clearProglogEnv(t)
	s, err := load(t, benchOptions(), "--concurrency", "64", "--no-coalesce")
	require.NoError(t, err)
	bs, err := readBenchSettings(s)
	require.NoError(t, err)
	require.True(t, bs.noCoalesce, "--no-coalesce read")

	s, err = load(t, benchOptions(), "--mode", "batch", "--no-coalesce")
	require.NoError(t, err)
	_, err = readBenchSettings(s)
	require.ErrorIs(t, err, errUsage, "--no-coalesce with --mode batch")
	require.ErrorContains(t, err, "--mode produce only")
}
