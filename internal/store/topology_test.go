package store

import (
	"errors"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestCASTopology(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)

	if topo, rev, err := s.Topology(ctx); err != nil || rev != 0 || topo.Generation != 0 {
		t.Fatalf("absent topology: %+v %d %v", topo, rev, err)
	}
	ok, rev1, err := s.CASTopology(ctx, cluster.Topology{Cluster: "c", Generation: 1, SyncSet: []string{"m2"}}, 0)
	if err != nil || !ok || rev1 == 0 {
		t.Fatalf("create: %v %d %v", ok, rev1, err)
	}
	// Create-only fails once it exists, and reports the current revision.
	ok, cur, err := s.CASTopology(ctx, cluster.Topology{Generation: 99}, 0)
	if err != nil || ok || cur != rev1 {
		t.Fatalf("second create: ok=%v cur=%d err=%v, want false %d", ok, cur, err, rev1)
	}
	ok, rev2, err := s.CASTopology(ctx, cluster.Topology{Cluster: "c", Generation: 2}, rev1)
	if err != nil || !ok || rev2 <= rev1 {
		t.Fatalf("update: %v %d %v", ok, rev2, err)
	}
	// A writer that read rev1 has lost.
	ok, cur, err = s.CASTopology(ctx, cluster.Topology{Generation: 99}, rev1)
	if err != nil || ok || cur != rev2 {
		t.Fatalf("stale update: ok=%v cur=%d err=%v", ok, cur, err)
	}
	got, rev, err := s.Topology(ctx)
	if err != nil || rev != rev2 || got.Generation != 2 || got.Cluster != "c" {
		t.Fatalf("read back: %+v %d %v", got, rev, err)
	}
}

func TestUpdateTopologyRetriesOnConflict(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)

	calls := 0
	got, rev, err := s.UpdateTopology(ctx, func(topo *cluster.Topology) error {
		calls++
		if calls == 1 {
			// Another writer gets in between our read and our write.
			if _, _, err := s.UpdateTopology(ctx, func(t *cluster.Topology) error {
				t.Paused = true
				return nil
			}); err != nil {
				return err
			}
		}
		topo.Generation++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("fn called %d times, want 2 (one retry)", calls)
	}
	if !got.Paused || got.Generation != 1 {
		t.Fatalf("lost the other writer's change: %+v", got)
	}
	if _, cur, _ := s.Topology(ctx); cur != rev {
		t.Fatalf("returned rev %d, stored %d", rev, cur)
	}

	// fn's error aborts without writing.
	boom := errors.New("boom")
	if _, _, err := s.UpdateTopology(ctx, func(*cluster.Topology) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
	if _, cur, _ := s.Topology(ctx); cur != rev {
		t.Fatal("aborted update wrote")
	}
}

func TestUpdateTopologyConcurrentIncrements(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				if _, _, err := s.UpdateTopology(ctx, func(t *cluster.Topology) error {
					t.Generation++
					return nil
				}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, _, err := s.Topology(ctx)
	if err != nil || got.Generation != writers*each {
		t.Fatalf("generation %d (err %v), want %d: an increment was lost", got.Generation, err, writers*each)
	}
}
