package buffer

import (
	"testing"
	"time"
)

func TestAckedSeqs(t *testing.T) {
	var a ackedSeqs
	t0 := time.Unix(1000, 0)
	steps := []struct {
		seq  uint64
		at   time.Duration
		want bool
	}{
		{1, 0, false},
		{2, time.Second, false},
		{1, 2 * time.Second, true},  // a second delivery of 1: counted already
		{0, 3 * time.Second, false}, // no sequence known: never deduplicated
		{0, 4 * time.Second, false},
		{2, ackedMemory + 500*time.Millisecond, true}, // 1 is forgotten by now, 2 not yet
		{3, ackedMemory + 2*time.Second, false},
		{1, ackedMemory + 3*time.Second, false}, // forgotten: counts (past the memory)
	}
	for i, s := range steps {
		if got := a.seen(s.seq, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d: seen(%d) = %v, want %v", i, s.seq, got, s.want)
		}
	}
	if len(a.at) != len(a.order) {
		t.Fatalf("map %d entries, order %d", len(a.at), len(a.order))
	}
}
