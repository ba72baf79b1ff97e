package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestCampaignExactlyOneWins(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	const rounds, campaigners = 50, 3
	leases := make([]LeaseID, campaigners)
	for i := range leases {
		id, err := s.GrantLease(ctx, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		leases[i] = id
		t.Cleanup(func() { _ = s.RevokeLease(ctx, id) })
	}
	for round := range rounds {
		topo, topoRev, err := s.Topology(ctx)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			ok     bool
			leader *cluster.Leader
			err    error
		}
		results := make([]result, campaigners)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range campaigners {
			wg.Go(func() {
				next := topo
				next.Generation++
				next.Primary = fmt.Sprintf("m%d", i)
				<-start
				ok, l, err := s.Campaign(ctx, "home", next.Primary, leases[i], topoRev, next)
				results[i] = result{ok, l, err}
			})
		}
		close(start)
		wg.Wait()

		var winner *cluster.Leader
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("round %d campaigner %d: %v", round, i, r.err)
			}
			if r.ok {
				if winner != nil {
					t.Fatalf("round %d: two winners: %+v and %+v", round, *winner, *r.leader)
				}
				winner = r.leader
			}
		}
		if winner == nil {
			t.Fatalf("round %d: nobody won: %+v", round, results)
		}
		for i, r := range results {
			if !r.ok && (r.leader == nil || *r.leader != *winner) {
				t.Fatalf("round %d campaigner %d lost but saw leader %+v, winner %+v", round, i, r.leader, *winner)
			}
		}
		// The topology written is the winner's, in the same revision as the key.
		got, gotRev, err := s.Topology(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Primary != winner.Member || got.Generation != topo.Generation+1 || gotRev != winner.Revision {
			t.Fatalf("round %d: topology %+v rev %d, winner %+v", round, got, gotRev, *winner)
		}
		cur, err := s.Leader(ctx, "home")
		if err != nil {
			t.Fatal(err)
		}
		if cur == nil || *cur != *winner {
			t.Fatalf("round %d: Leader() = %+v, want %+v", round, cur, *winner)
		}
		if ok, _, err := s.ReleaseLeader(ctx, "home", winner.Revision); err != nil || !ok {
			t.Fatalf("round %d: release: %v %v", round, ok, err)
		}
	}
}

func TestCampaignFailsOnStaleTopology(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.RevokeLease(ctx, id) })

	// Campaigning with topoRev 0 requires the topology to be absent.
	ok, rev, err := s.CASTopology(ctx, cluster.Topology{Generation: 1}, 0)
	if err != nil || !ok {
		t.Fatalf("cas: %v %v", ok, err)
	}
	ok, l, err := s.Campaign(ctx, "home", "m1", id, 0, cluster.Topology{Generation: 2})
	if err != nil || ok || l != nil {
		t.Fatalf("campaign with absent-topology rev: ok=%v leader=%v err=%v", ok, l, err)
	}
	// A topology revision from before another writer's change is stale too.
	ok, _, err = s.CASTopology(ctx, cluster.Topology{Generation: 2}, rev)
	if err != nil || !ok {
		t.Fatalf("cas: %v %v", ok, err)
	}
	ok, l, err = s.Campaign(ctx, "home", "m1", id, rev, cluster.Topology{Generation: 3})
	if err != nil || ok || l != nil {
		t.Fatalf("campaign with stale rev: ok=%v leader=%v err=%v", ok, l, err)
	}
	// Nothing was written.
	if l, err := s.Leader(ctx, "home"); err != nil || l != nil {
		t.Fatalf("leader after failed campaigns: %v %v", l, err)
	}
	if topo, _, err := s.Topology(ctx); err != nil || topo.Generation != 2 {
		t.Fatalf("topology after failed campaigns: %+v %v", topo, err)
	}
}

func TestCampaignWithExpiredLeaseWritesNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeLease(ctx, id); err != nil {
		t.Fatal(err)
	}
	ok, _, err := s.Campaign(ctx, "home", "m1", id, 0, cluster.Topology{Generation: 1})
	if !errors.Is(err, ErrLeaseNotFound) || ok {
		t.Fatalf("campaign with revoked lease: ok=%v err=%v, want ErrLeaseNotFound", ok, err)
	}
	if _, rev, err := s.Topology(ctx); err != nil || rev != 0 {
		t.Fatalf("topology written by failed campaign: rev %d err %v", rev, err)
	}
	if _, _, err := s.Campaign(ctx, "home", "m1", 0, 0, cluster.Topology{}); err == nil {
		t.Fatal("campaign without lease succeeded")
	}
}

func TestReleaseLeaderOnlyWithOwnRevision(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.RevokeLease(ctx, id) })
	ok, l, err := s.Campaign(ctx, "home", "m1", id, 0, cluster.Topology{Generation: 1})
	if err != nil || !ok {
		t.Fatalf("campaign: %v %v", ok, err)
	}
	for _, rev := range []int64{l.Revision - 1, l.Revision + 1} {
		ok, rev2, err := s.ReleaseLeader(ctx, "home", rev)
		if err != nil || ok || rev2 != 0 {
			t.Fatalf("release with revision %d (term %d): ok=%v rev=%d err=%v", rev, l.Revision, ok, rev2, err)
		}
	}
	if _, _, err := s.ReleaseLeader(ctx, "home", 0); err == nil {
		t.Fatal("release with revision 0 succeeded")
	}
	ok, delRev, err := s.ReleaseLeader(ctx, "home", l.Revision)
	if err != nil || !ok || delRev <= l.Revision {
		t.Fatalf("release own term: ok=%v rev=%d err=%v", ok, delRev, err)
	}
	if cur, err := s.Leader(ctx, "home"); err != nil || cur != nil {
		t.Fatalf("leader after release: %v %v", cur, err)
	}
	// The same term cannot be released twice, and in particular not a successor's.
	_, topoRev, err := s.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ok, l2, err := s.Campaign(ctx, "home", "m2", id, topoRev, cluster.Topology{Generation: 2})
	if err != nil || !ok {
		t.Fatalf("second campaign: %v %v", ok, err)
	}
	if ok, _, err := s.ReleaseLeader(ctx, "home", l.Revision); err != nil || ok {
		t.Fatalf("old term released successor's key: ok=%v err=%v", ok, err)
	}
	if cur, err := s.Leader(ctx, "home"); err != nil || cur == nil || *cur != *l2 {
		t.Fatalf("successor's key: %+v %v", cur, err)
	}
}

func TestHandover(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.RevokeLease(ctx, id) })
	ok, l, err := s.Campaign(ctx, "home", "m1", id, 0, cluster.Topology{Primary: "m1", Generation: 1})
	if err != nil || !ok {
		t.Fatalf("campaign: %v %v", ok, err)
	}
	topoRev := l.Revision // written in the same transaction
	next := cluster.Topology{Primary: "m2", Generation: 2, Switchover: &cluster.SwitchoverRequest{From: "m1", To: "m2", HandedOver: true}}

	cases := []struct {
		name              string
		leaderRev, topoRv int64
	}{
		{"stale topology", l.Revision, topoRev - 1},
		{"wrong term", l.Revision + 1, topoRev},
	}
	for _, c := range cases {
		ok, rev, err := s.Handover(ctx, "home", c.leaderRev, c.topoRv, next)
		if err != nil || ok || rev != 0 {
			t.Fatalf("%s: ok=%v rev=%d err=%v", c.name, ok, rev, err)
		}
	}
	if cur, err := s.Leader(ctx, "home"); err != nil || cur == nil {
		t.Fatalf("leader after failed handovers: %v %v", cur, err)
	}

	ok, rev, err := s.Handover(ctx, "home", l.Revision, topoRev, next)
	if err != nil || !ok {
		t.Fatalf("handover: ok=%v err=%v", ok, err)
	}
	if cur, err := s.Leader(ctx, "home"); err != nil || cur != nil {
		t.Fatalf("leader after handover: %v %v", cur, err)
	}
	got, gotRev, err := s.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gotRev != rev || got.Primary != "m2" || got.Switchover == nil || !got.Switchover.HandedOver {
		t.Fatalf("topology after handover: %+v rev %d (handover rev %d)", got, gotRev, rev)
	}
	// The new primary can now campaign on exactly that topology revision.
	ok, l2, err := s.Campaign(ctx, "home", "m2", id, rev, got)
	if err != nil || !ok || l2.Member != "m2" {
		t.Fatalf("campaign after handover: %v %+v %v", ok, l2, err)
	}
}

func TestLeaderRegionsAreIndependent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.RevokeLease(ctx, id) })
	ok, _, err := s.Campaign(ctx, "home", "m1", id, 0, cluster.Topology{Generation: 1})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	_, rev, err := s.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ok, l, err := s.Campaign(ctx, "away", "a1", id, rev, cluster.Topology{Generation: 1})
	if err != nil || !ok || l.Region != "away" || l.LeaseID != int64(id) {
		t.Fatalf("campaign away: %v %+v %v", ok, l, err)
	}
}
