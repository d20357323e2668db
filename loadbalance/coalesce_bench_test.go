package loadbalance

import (
	"testing"
)

// BenchmarkProduceOneWriter: one caller, one call at a time, against the
// in-process fake cluster, with and without coalescing: the cost a lone
// writer pays for it (a call that finds nothing in flight goes at once).
func BenchmarkProduceOneWriter(b *testing.B) {
	for _, bc := range []struct {
		name       string
		noCoalesce bool
	}{{"coalescing", false}, {"no-coalesce", true}} {
		b.Run(bc.name, func(b *testing.B) {
			cluster := newFakeCluster(b, 1)
			client := newTestClient(b, Config{Seeds: cluster.addrs(), NoCoalesce: bc.noCoalesce})
			ctx := testContext(b)
			value := make([]byte, 100)
			if _, err := client.Produce(ctx, value); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.Produce(ctx, value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
