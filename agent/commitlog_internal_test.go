package agent

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
)

func TestTopicConfigMilliseconds(t *testing.T) {
	tests := []struct {
		name string
		ms   uint64
		want time.Duration
	}{
		{"zero", 0, 0},
		{"one and a half seconds", 1500, 1500 * time.Millisecond},
		{"largest duration", math.MaxInt64 / uint64(time.Millisecond), math.MaxInt64 / time.Millisecond * time.Millisecond},
		{"past it", math.MaxInt64/uint64(time.Millisecond) + 1, math.MaxInt64},
		{"minus one sent unsigned", math.MaxUint64, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := topicConfig(&api.TopicConfig{RetentionAgeMs: tt.ms, SegmentAgeMs: tt.ms})
			require.Equal(t, tt.want, got.RetentionAge, "RetentionAge of %d ms", tt.ms)
			require.Equal(t, tt.want, got.SegmentAge, "SegmentAge of %d ms", tt.ms)
		})
	}
}
