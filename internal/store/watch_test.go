package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestWatchDeliversTypedUpdates(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)

	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Members) != 0 || len(snap.Leaders) != 0 || snap.TopologyRev != 0 {
		t.Fatalf("fresh snapshot: %+v", snap)
	}
	ch := s.Watch(ctx, snap.Revision)

	id, err := s.GrantLease(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutMember(ctx, cluster.Member{Name: "m1", Region: "home", LSN: 42}, id); err != nil {
		t.Fatal(err)
	}
	ok, l, err := s.Campaign(ctx, "home", "m1", id, 0, cluster.Topology{Primary: "m1", Generation: 1})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	// Events of the store's other parts are not updates.
	if err := s.AppendEvent(ctx, cluster.Event{Kind: "x"}); err != nil {
		t.Fatal(err)
	}

	u := nextUpdate(t, ch, 5*time.Second)
	if u.Kind != MemberPut || u.Name != "m1" || u.Member == nil || u.Member.LSN != 42 || u.Member.LeaseID != int64(id) {
		t.Fatalf("first update %+v", u)
	}
	// Leader key and topology come from one transaction, leader key first.
	u = nextUpdate(t, ch, 5*time.Second)
	if u.Kind != LeaderPut || u.Name != "home" || u.Leader == nil || *u.Leader != *l || u.Revision != l.Revision {
		t.Fatalf("second update %+v, want leader %+v", u, *l)
	}
	u = nextUpdate(t, ch, 5*time.Second)
	if u.Kind != TopologyPut || u.Topology == nil || u.Topology.Primary != "m1" || u.TopologyRev != l.Revision {
		t.Fatalf("third update %+v", u)
	}

	// Lease expiry: the leader's deletion arrives with the term that ended.
	var memberGone, leaderGone bool
	deadline := time.Now().Add(10 * time.Second)
	for !memberGone || !leaderGone {
		u := nextUpdate(t, ch, time.Until(deadline))
		switch u.Kind {
		case MemberDeleted:
			if u.Name != "m1" || u.Member == nil || u.Member.Name != "m1" {
				t.Fatalf("member deleted %+v", u)
			}
			memberGone = true
		case LeaderDeleted:
			if u.Name != "home" || u.Leader == nil || u.Leader.Member != "m1" || u.Leader.Revision != l.Revision || u.Revision <= l.Revision {
				t.Fatalf("leader deleted %+v", u)
			}
			leaderGone = true
		default:
			t.Fatalf("unexpected update %+v", u)
		}
	}
}

func TestWatchFromZeroStartsWithResync(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	if _, _, err := s.CASTopology(ctx, cluster.Topology{Generation: 3}, 0); err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, 0)
	u := nextUpdate(t, ch, 5*time.Second)
	if u.Kind != Resync || u.Snapshot == nil || u.Snapshot.Topology.Generation != 3 || u.Revision != u.Snapshot.Revision {
		t.Fatalf("first update %+v", u)
	}
	// Claiming initialize has no update of its own: it arrives as a Resync.
	if _, _, err := s.ClaimInitialize(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	u = waitUpdate(t, ch, Resync, 5*time.Second)
	if u.Snapshot.Initialize != "m1" {
		t.Fatalf("resync after claim: %+v", u.Snapshot)
	}
}

func TestWatchSkipsUndecodableValues(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	cli := s.Client()
	ch := s.Watch(ctx, 0)
	waitUpdate(t, ch, Resync, 5*time.Second)

	for _, kv := range [][2]string{
		{"members/bad", "not json"},
		{"members/other", `{"name":"someone-else"}`},
		{"leader/home", `null`},
		{"topology", `[1,2]`},
		{"members/a/b", `{}`},
		{"unknown", `{}`},
	} {
		if _, err := cli.Put(ctx, s.Prefix()+kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.RevokeLease(ctx, id) })
	if err := s.PutMember(ctx, cluster.Member{Name: "good"}, id); err != nil {
		t.Fatal(err)
	}
	u := nextUpdate(t, ch, 5*time.Second)
	if u.Kind != MemberPut || u.Name != "good" {
		t.Fatalf("after bad values, got %+v, want the good member", u)
	}

	// Collections skip bad values; single keys report ErrCorrupt.
	ms, err := s.Members(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("members %v %v", ms, err)
	}
	if _, err := s.Leader(ctx, "home"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("leader: %v, want ErrCorrupt", err)
	}
	if _, _, err := s.Topology(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("topology: %v, want ErrCorrupt", err)
	}
	if _, err := s.Snapshot(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("snapshot: %v, want ErrCorrupt", err)
	}
}

// Not parallel: compaction is etcd-wide and would disturb other tests' watches.
func TestWatchResyncsAfterCompaction(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	old, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := s.UpdateTopology(ctx, func(t *cluster.Topology) error { t.Generation = int64(i + 1); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	_, rev, err := s.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, old.Revision)
	u := nextUpdate(t, ch, 10*time.Second)
	if u.Kind != Resync || u.Snapshot == nil || u.Snapshot.Topology.Generation != 3 || u.Snapshot.TopologyRev != rev {
		t.Fatalf("after compaction: %+v", u)
	}
	// And it goes on from there.
	if _, _, err := s.UpdateTopology(ctx, func(t *cluster.Topology) error { t.Generation = 4; return nil }); err != nil {
		t.Fatal(err)
	}
	u = nextUpdate(t, ch, 5*time.Second)
	if u.Kind != TopologyPut || u.Topology.Generation != 4 {
		t.Fatalf("after resync: %+v", u)
	}
}

// A restarted etcd must not cost the watcher an update: either the client
// resumes the watch from its last revision, or Watch resyncs.
func TestWatchSurvivesEtcdRestart(t *testing.T) {
	t.Parallel()
	cfg, err := testEmbedConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := startEtcd(t, cfg)
	s := openStore(t, Config{Endpoints: e.Endpoints(), RequestTimeout: 500 * time.Millisecond})
	ctx := testCtx(t)
	ch := s.Watch(ctx, 0)
	waitUpdate(t, ch, Resync, 5*time.Second)
	if _, _, err := s.CASTopology(ctx, cluster.Topology{Generation: 1}, 0); err != nil {
		t.Fatal(err)
	}
	waitUpdate(t, ch, TopologyPut, 5*time.Second)

	e.Close()
	// While etcd is down, calls fail as "unavailable", not as a failed compare.
	ok, _, err := s.CASTopology(ctx, cluster.Topology{Generation: 2}, 1)
	if !errors.Is(err, ErrUnavailable) || ok {
		t.Fatalf("cas with etcd down: ok=%v err=%v, want ErrUnavailable", ok, err)
	}
	e2 := startEtcd(t, cfg)

	other := openStore(t, Config{Cluster: s.cfg.Cluster, Endpoints: e2.Endpoints()})
	if _, _, err := other.UpdateTopology(ctx, func(t *cluster.Topology) error { t.Generation = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		u := nextUpdate(t, ch, time.Until(deadline))
		if u.Kind == TopologyPut && u.Topology.Generation == 7 {
			break
		}
		if u.Kind == Resync && u.Snapshot.Topology.Generation == 7 {
			break
		}
		t.Logf("update while reconnecting: %s rev %d", u.Kind, u.Revision)
	}
}

func TestUnreachableStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{
		Endpoints:      []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))},
		RequestTimeout: 300 * time.Millisecond,
	})
	ctx := testCtx(t)
	if _, err := s.Members(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("members: %v, want ErrUnavailable", err)
	}
	if ok, _, err := s.Campaign(ctx, "home", "m1", 1, 0, cluster.Topology{}); !errors.Is(err, ErrUnavailable) || ok {
		t.Fatalf("campaign: %v %v, want ErrUnavailable", ok, err)
	}
	// The caller's own cancellation is not the store's unavailability.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Members(cctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
	// A watch on an unreachable store keeps trying and closes with ctx.
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	for u := range s.Watch(wctx, 0) {
		t.Fatalf("update from unreachable store: %+v", u)
	}
}

func TestStoreClosed(t *testing.T) {
	t.Parallel()
	s, err := Open(Config{Cluster: "closed", Endpoints: testEndpoints}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(context.Background(), 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range ch { // closed by Close although its ctx lives on
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Members(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if _, ok := <-s.Watch(context.Background(), 0); ok {
		t.Fatal("watch after close delivered")
	}
}

func TestSnapshotApply(t *testing.T) {
	var s Snapshot
	s.Apply(Update{Kind: MemberPut, Name: "a", Member: &cluster.Member{Name: "a"}, Revision: 5})
	s.Apply(Update{Kind: LeaderPut, Name: "home", Leader: &cluster.Leader{Member: "a"}, Revision: 6})
	s.Apply(Update{Kind: TopologyPut, Topology: &cluster.Topology{Generation: 2}, TopologyRev: 7, Revision: 7})
	if s.Members["a"].Name != "a" || s.Leaders["home"].Member != "a" || s.Topology.Generation != 2 || s.TopologyRev != 7 || s.Revision != 7 {
		t.Fatalf("puts not applied: %+v", s)
	}
	s.Apply(Update{Kind: LeaderDeleted, Name: "home", Revision: 8})
	s.Apply(Update{Kind: MemberDeleted, Name: "a", Revision: 9})
	if len(s.Leaders) != 0 || len(s.Members) != 0 || s.Revision != 9 {
		t.Fatalf("deletes not applied: %+v", s)
	}
	s.Apply(Update{Kind: Resync, Snapshot: &Snapshot{Revision: 20}, Revision: 20})
	if s.Revision != 20 || s.Members == nil || s.Leaders == nil {
		t.Fatalf("resync: %+v", s)
	}
}
