package latency

import (
	"testing"
	"time"
)

func TestQuantileAndMean(t *testing.T) {
	sorted := []time.Duration{1 * time.Microsecond, 2 * time.Microsecond, 3 * time.Microsecond, 4 * time.Microsecond, 100 * time.Microsecond}
	for _, tt := range []struct {
		q    float64
		want float64
	}{{0, 1}, {0.5, 3}, {0.99, 4}, {1, 100}} {
		if got := Quantile(sorted, tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("Quantile of nothing = %v, want 0", got)
	}
	if got := Mean(sorted); got != 22 {
		t.Errorf("Mean = %v, want 22", got)
	}
	if got := Mean(nil); got != 0 {
		t.Errorf("Mean of nothing = %v, want 0", got)
	}
}
