package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestInitializeClaimAndSystemID(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)

	if h, id, err := s.Initialize(ctx); err != nil || h != "" || id != "" {
		t.Fatalf("fresh: %q %q %v", h, id, err)
	}
	if err := s.SetSystemID(ctx, "7"); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("set system id before claim: %v", err)
	}

	// Concurrent claims: exactly one winner, everyone agrees on the holder.
	const n = 8
	won := make([]bool, n)
	holders := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w, h, err := s.ClaimInitialize(ctx, fmt.Sprintf("m%d", i))
			if err != nil {
				t.Error(err)
			}
			won[i], holders[i] = w, h
		})
	}
	wg.Wait()
	winner := ""
	for i := range n {
		if won[i] {
			if winner != "" {
				t.Fatalf("two winners: %s and m%d", winner, i)
			}
			winner = fmt.Sprintf("m%d", i)
		}
	}
	if winner == "" {
		t.Fatal("no winner")
	}
	for i, h := range holders {
		if h != winner {
			t.Fatalf("m%d sees holder %q, winner %q", i, h, winner)
		}
	}
	// The holder claiming again (agent restart) still holds it.
	if w, h, err := s.ClaimInitialize(ctx, winner); err != nil || !w || h != winner {
		t.Fatalf("reclaim: %v %q %v", w, h, err)
	}

	if err := s.SetSystemID(ctx, "7311841163456789012"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSystemID(ctx, "7311841163456789012"); err != nil {
		t.Fatalf("same id again: %v", err)
	}
	if err := s.SetSystemID(ctx, "999"); !errors.Is(err, ErrSystemIDMismatch) {
		t.Fatalf("different id: %v, want ErrSystemIDMismatch", err)
	}
	h, id, err := s.Initialize(ctx)
	if err != nil || h != winner || id != "7311841163456789012" {
		t.Fatalf("initialize: %q %q %v", h, id, err)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil || snap.Initialize != winner || snap.SystemID != id {
		t.Fatalf("snapshot: %q %q %v", snap.Initialize, snap.SystemID, err)
	}
}
