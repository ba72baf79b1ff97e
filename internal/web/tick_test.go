package web

import (
	"testing"
	"time"
)

func TestRecordCounterSpacing(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newRecordCounter()
	if _, due := c.due("a", t0); !due {
		t.Fatal("a member never counted is due")
	}
	c.last["a"] = lastCount{n: 7, ok: true, started: t0, took: 500 * time.Millisecond}
	c.last["b"] = lastCount{n: 3, ok: true, started: t0, took: time.Millisecond}
	for _, tc := range []struct {
		name  string
		after time.Duration
		due   bool
	}{
		{"a", time.Second, false},
		{"a", 9 * time.Second, false},
		{"a", 10 * time.Second, true},
		{"b", 10 * time.Millisecond, false},
		{"b", time.Second, true},
	} {
		l, due := c.due(tc.name, t0.Add(tc.after))
		if due != tc.due {
			t.Errorf("%s after %v: due %v, want %v", tc.name, tc.after, due, tc.due)
		}
		if !due && !l.ok {
			t.Errorf("%s after %v: no stand-in count", tc.name, tc.after)
		}
	}
}
