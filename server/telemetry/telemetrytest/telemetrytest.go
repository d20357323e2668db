// Package telemetrytest helps tests read what a node exposes on /metrics.
package telemetrytest

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Metrics are the metric families of one scrape, by name.
type Metrics map[string]*dto.MetricFamily

// Scrape GETs url with client and parses the Prometheus text format,
// failing t unless the answer is 200 and parses.
func Scrape(t testing.TB, client *http.Client, url string) Metrics {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err, "GET %s", url)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s status", url)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "parse %s", url)
	return Metrics(families)
}

// Value returns the value of the sample of the named counter, gauge or
// untyped metric whose labels include labels (a histogram or summary
// answers its sample count), and whether there is one. When several
// samples match, their values are summed.
func (m Metrics) Value(name string, labels map[string]string) (float64, bool) {
	family, ok := m[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
	for _, metric := range family.GetMetric() {
		if !hasLabels(metric, labels) {
			continue
		}
		found = true
		switch {
		case metric.Counter != nil:
			sum += metric.GetCounter().GetValue()
		case metric.Gauge != nil:
			sum += metric.GetGauge().GetValue()
		case metric.Histogram != nil:
			sum += float64(metric.GetHistogram().GetSampleCount())
		case metric.Summary != nil:
			sum += float64(metric.GetSummary().GetSampleCount())
		case metric.Untyped != nil:
			sum += metric.GetUntyped().GetValue()
		}
	}
	return sum, found
}

func hasLabels(metric *dto.Metric, want map[string]string) bool {
	matched := 0
	for _, pair := range metric.GetLabel() {
		if v, ok := want[pair.GetName()]; ok {
			if v != pair.GetValue() {
				return false
			}
			matched++
		}
	}
	return matched == len(want)
}
