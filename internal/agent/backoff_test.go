package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestActionBackoff(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	promote := cluster.Plan{Action: cluster.ActFinishPromote}
	follow := cluster.Plan{Action: cluster.ActFollow, Target: "home-a"}
	fail := errors.New("the database system is starting up")
	var b actionBackoff
	// The first two failures in a row are retried at once.
	for i := 1; i <= backoffFreeFailures; i++ {
		b.done(promote, fail, t0)
		if w := b.wait(promote, t0); w != 0 {
			t.Fatalf("after %d failure(s): wait %v, want none", i, w)
		}
	}
	// Then the waits double, up to backoffMax.
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, backoffMax, backoffMax}
	for i, w := range want {
		b.done(promote, fail, t0)
		if got := b.wait(promote, t0); got != w {
			t.Fatalf("failure %d: wait %v, want %v", backoffFreeFailures+i+1, got, w)
		}
	}
	if got := b.wait(promote, t0.Add(backoffMax)); got != 0 {
		t.Fatalf("once the wait is over: %v", got)
	}
	// Another plan is not held back, and its failures count afresh.
	if got := b.wait(follow, t0); got != 0 {
		t.Fatalf("another plan waits %v", got)
	}
	b.done(follow, fail, t0)
	if got := b.wait(follow, t0); got != 0 {
		t.Fatalf("a first failure of another plan waits %v", got)
	}
	// A success ends the backoff.
	for range 5 {
		b.done(promote, fail, t0)
	}
	b.done(promote, nil, t0)
	b.done(promote, fail, t0)
	if got := b.wait(promote, t0); got != 0 {
		t.Fatalf("after a success, a first failure waits %v", got)
	}
	// The same action on another target is another plan.
	b = actionBackoff{}
	for range 4 {
		b.done(follow, fail, t0)
	}
	if got := b.wait(cluster.Plan{Action: cluster.ActFollow, Target: "home-b"}, t0); got != 0 {
		t.Fatalf("follow of another leader waits %v", got)
	}
}
