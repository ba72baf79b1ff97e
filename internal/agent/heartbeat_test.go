package agent

import (
	"testing"
	"time"
)

func TestLagTracker(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	at := func(n int) time.Time { return t0.Add(ms(n)) }
	type obs struct{ beat, seen int }
	for _, tt := range []struct {
		name   string
		seen   []obs
		now    int
		want   time.Duration
		wantOK bool
	}{
		{"nothing seen", nil, 500, 0, false},
		{"seen 30ms after it was written", []obs{{0, 30}}, 40, ms(30), true},
		{"overdue heartbeat counts", []obs{{0, 30}}, 400, ms(300), true},
		{"a newer heartbeat replaces the sample", []obs{{0, 80}, {100, 110}}, 120, ms(10), true},
		{"an older heartbeat read again is ignored", []obs{{100, 110}, {0, 150}}, 150, ms(10), true},
		{"clock skew: negative sample is 0", []obs{{100, 90}}, 95, 0, true},
	} {
		tr := lagTracker{interval: ms(100)}
		for _, o := range tt.seen {
			tr.observe(at(o.beat), at(o.seen))
		}
		got, ok := tr.lag(at(tt.now))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: lag = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
	tr := lagTracker{interval: ms(100)}
	tr.observe(at(0), at(10))
	tr.reset()
	if _, ok := tr.lag(at(20)); ok {
		t.Error("lag known after reset")
	}
}
