package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestEventsOrderAndUniqueKeys(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)

	// Same member, same nanosecond: every event must still be stored.
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := range 5 {
		e := cluster.Event{Time: at, Kind: cluster.EventPromoted, Member: "m1", Message: fmt.Sprint(i)}
		if err := s.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendEvent(ctx, cluster.Event{Kind: cluster.EventAgentStarted, Member: "m/2", Message: "now"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Events(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 {
		t.Fatalf("%d events, want 6", len(all))
	}
	for i := range 5 {
		if all[i].Message != fmt.Sprint(i) || !all[i].Time.Equal(at) {
			t.Fatalf("event %d = %+v", i, all[i])
		}
	}
	if all[5].Time.IsZero() || all[5].Member != "m/2" {
		t.Fatalf("last event %+v: time not filled or member changed", all[5])
	}
	for i := 1; i < len(all); i++ {
		if all[i].Revision <= all[i-1].Revision {
			t.Fatalf("revisions not increasing: %d then %d", all[i-1].Revision, all[i].Revision)
		}
	}
	last2, err := s.Events(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(last2) != 2 || last2[0].Message != "4" || last2[1].Message != "now" {
		t.Fatalf("newest 2 = %+v", last2)
	}
}

func TestEventsTrimmedToMax(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{Endpoints: testEndpoints, MaxEvents: 5})
	ctx := testCtx(t)
	base := time.Now()
	for i := range 12 {
		if err := s.AppendEvent(ctx, cluster.Event{Time: base.Add(time.Duration(i) * time.Millisecond), Kind: "k", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.Events(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 || evs[0].Message != "7" || evs[4].Message != "11" {
		t.Fatalf("after trimming: %d events %+v", len(evs), evs)
	}
}

func TestWatchEvents(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	if err := s.AppendEvent(ctx, cluster.Event{Kind: "before", Message: "old"}); err != nil {
		t.Fatal(err)
	}
	_, rev, err := s.EventLog(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch := s.WatchEvents(wctx, rev)
	for i := range 3 {
		if err := s.AppendEvent(ctx, cluster.Event{Kind: "after", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var prev int64
	for i := range 3 {
		select {
		case e := <-ch:
			if e.Message != fmt.Sprint(i) || e.Revision <= prev {
				t.Fatalf("event %d = %+v (previous revision %d)", i, e, prev)
			}
			prev = e.Revision
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d not delivered", i)
		}
	}
	cancel()
	for range ch { // must be closed when ctx ends
	}
}

// Not parallel: compaction is etcd-wide and would disturb other tests' watches.
func TestWatchEventsCatchesUpAfterCompaction(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	_, rev, err := s.EventLog(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.AppendEvent(ctx, cluster.Event{Kind: "k", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := s.Client().Get(ctx, "compact-marker")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}
	// Watching from before the compaction cannot replay history; the stored
	// events must come anyway, in order.
	ch := s.WatchEvents(ctx, rev)
	for i := range 3 {
		select {
		case e := <-ch:
			if e.Message != fmt.Sprint(i) {
				t.Fatalf("event %d = %+v", i, e)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not delivered after compaction", i)
		}
	}
}
