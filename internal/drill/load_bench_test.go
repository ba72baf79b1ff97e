package drill

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// latencyWriter answers after a fixed delay, like a database that is
// never the bottleneck.
type latencyWriter struct{ d time.Duration }

func (w latencyWriter) Write(ctx context.Context, _, _ string, _ time.Time) (string, error) {
	if w.d > 0 {
		t := time.NewTimer(w.d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return "bench", nil
}

func (latencyWriter) Close() {}

// BenchmarkLoadGenerator shows the load generator is not what limits a
// drill: at the drills' 2,000 writes/s against writes that take 5 ms it
// achieves the requested rate, and with instant writes it reaches many
// times that (its ceiling on this machine). Run:
//
//	go test -run '^$' -bench LoadGenerator -benchtime 1x ./internal/drill/
func BenchmarkLoadGenerator(b *testing.B) {
	for _, tt := range []struct {
		name    string
		rate    float64
		latency time.Duration
	}{
		{"2000-per-s-5ms-writes", 2000, 5 * time.Millisecond},
		{"ceiling-instant-writes", 1e6, 0},
	} {
		b.Run(tt.name, func(b *testing.B) {
			for range b.N {
				l := &Load{Drill: "bench", Writer: latencyWriter{tt.latency}, Rate: tt.rate, Concurrency: max(8, int(tt.rate/20)),
					Timeout: 30 * time.Second, Discard: true}
				var done atomic.Int64
				l.Observe = func(Record) { done.Add(1) }
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				start := time.Now()
				l.Run(ctx)
				cancel()
				achieved := float64(done.Load()) / time.Since(start).Seconds()
				b.ReportMetric(achieved, "writes/s")
				if tt.rate < 1e6 {
					b.ReportMetric(achieved/tt.rate, "achieved/requested")
				} else {
					b.ReportMetric(achieved/2000, "x-drill-rate")
				}
			}
		})
	}
}
