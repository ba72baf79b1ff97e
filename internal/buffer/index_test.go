package buffer

import (
	"fmt"
	"testing"
	"time"
)

func TestPendingIndex(t *testing.T) {
	x := newPendingIndex()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	w := func(key string, sec int) Write {
		return Write{Kind: "k", Key: key, AcceptedAt: t0.Add(time.Duration(sec) * time.Second)}
	}
	if n, oldest := x.depth(); n != 0 || !oldest.IsZero() {
		t.Fatalf("empty index: %d, %v", n, oldest)
	}
	if !x.add(w("a", 0)) || !x.add(w("b", 1)) || !x.add(w("c", 2)) {
		t.Fatal("add of new keys reported false")
	}
	if x.add(w("a", 5)) {
		t.Fatal("add of a pending key reported true")
	}
	if e, _ := x.get("a"); !e.acceptedAt.Equal(t0) {
		t.Fatalf("a re-added key kept %v, want its first acceptance", e.acceptedAt)
	}
	// a fails permanently (stays pending with its attempts), b commits,
	// c goes dead.
	again := w("a", 0)
	again.Attempts, again.LastError = 1, "23514"
	x.settle(settledBatch{applied: []Write{w("b", 1)}, again: []Write{again}, dead: []Write{w("c", 2)}})
	if e, ok := x.get("a"); !ok || e.attempts != 1 || e.lastError != "23514" {
		t.Fatalf("a after a permanent failure: %+v %v", e, ok)
	}
	for _, k := range []string{"b", "c"} {
		if _, ok := x.get(k); ok {
			t.Fatalf("%s still pending after settling", k)
		}
	}
	if n, oldest := x.depth(); n != 1 || !oldest.Equal(t0) {
		t.Fatalf("depth = %d, %v; want 1, %v", n, oldest, t0)
	}
	x.settle(settledBatch{applied: []Write{w("a", 0)}})
	if n, oldest := x.depth(); n != 0 || !oldest.IsZero() {
		t.Fatalf("after all settled: %d, %v", n, oldest)
	}
	// Settling keeps the fifo short without anyone calling depth.
	for i := range 100_000 {
		k := fmt.Sprint(i)
		x.add(w(k, i))
		x.settle(settledBatch{applied: []Write{w(k, i)}})
	}
	if len(x.fifo)-x.head > 1 || len(x.fifo) > 4096 {
		t.Fatalf("fifo holds %d entries (head %d) with nothing pending", len(x.fifo), x.head)
	}
	// remove (a write that was never stored) forgets it.
	x.add(w("d", 9))
	x.remove("d")
	if n, _ := x.depth(); n != 0 {
		t.Fatalf("depth %d after remove", n)
	}
}

func TestPermanentRetryDelay(t *testing.T) {
	base, ceiling := 50*time.Millisecond, 5*time.Second
	tests := []struct {
		attempts []int
		want     time.Duration
	}{
		{nil, 0},
		{[]int{0}, 0},
		{[]int{0, 3}, 0}, // a fresh write in the batch: no wait
		{[]int{1}, 50 * time.Millisecond},
		{[]int{2}, 100 * time.Millisecond},
		{[]int{4, 2}, 100 * time.Millisecond},
		{[]int{7}, 3200 * time.Millisecond},
		{[]int{8}, 5 * time.Second},
		{[]int{24}, 5 * time.Second},
	}
	for _, tt := range tests {
		var ws []Write
		for _, a := range tt.attempts {
			ws = append(ws, Write{Attempts: a})
		}
		if got := permanentRetryDelay(ws, base, ceiling); got != tt.want {
			t.Errorf("attempts %v: %v, want %v", tt.attempts, got, tt.want)
		}
	}
}
