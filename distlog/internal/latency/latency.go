// Package latency reports the latencies a benchmark measured per operation
// as benchmark metrics, so that distlog's and its storage engine's
// benchmarks that time each call (appends while compaction or truncation
// runs, rolls) report them alike.
package latency

import (
	"slices"
	"testing"
	"time"
)

// Quantile returns the q-quantile (0..1, nearest rank below) of sorted, in
// microseconds; 0 when sorted is empty.
func Quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(q*float64(len(sorted)-1))].Microseconds())
}

// Mean returns the mean of d in microseconds; 0 when d is empty.
func Mean(d []time.Duration) float64 {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return float64(sum.Microseconds()) / float64(max(1, len(d)))
}

// Report sorts latencies and reports their p50, p99, p99.9 and maximum as
// the metrics "p50-µs", "p99-µs", "p99.9-µs" and "max-µs" of b.
func Report(b *testing.B, latencies []time.Duration) {
	slices.Sort(latencies)
	b.ReportMetric(Quantile(latencies, 0.50), "p50-µs")
	b.ReportMetric(Quantile(latencies, 0.99), "p99-µs")
	b.ReportMetric(Quantile(latencies, 0.999), "p99.9-µs")
	b.ReportMetric(Quantile(latencies, 1), "max-µs")
}
