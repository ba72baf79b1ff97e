package store

import (
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestLeaseExpiryRemovesMemberAndLeader(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)

	id, granted, err := s.GrantLeaseTTL(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// With the embedded defaults (50ms tick, 500ms election) etcd's minimum is
	// ceil(1.5 * 500ms) = 1s, so a 1s lease must not be raised.
	if granted != time.Second {
		t.Fatalf("granted ttl %s, want 1s", granted)
	}
	if err := s.PutMember(ctx, cluster.Member{Name: "m1", Region: "home"}, id); err != nil {
		t.Fatal(err)
	}
	ok, _, err := s.Campaign(ctx, "home", "m1", id, 0, cluster.Topology{Generation: 1})
	if err != nil || !ok {
		t.Fatalf("campaign: ok=%v err=%v", ok, err)
	}
	ttl, err := s.KeepAliveOnce(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > time.Second {
		t.Fatalf("keepalive ttl %s", ttl)
	}
	members, err := s.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := members["m1"]; !ok || m.LeaseID != int64(id) || m.Region != "home" {
		t.Fatalf("members = %+v", members)
	}

	// Stop renewing: both keys must vanish on their own.
	eventually(t, 10*time.Second, "member and leader keys to expire", func() bool {
		ms, err := s.Members(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.Leader(ctx, "home")
		if err != nil {
			t.Fatal(err)
		}
		return len(ms) == 0 && l == nil
	})
	if _, err := s.KeepAliveOnce(ctx, id); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keepalive of expired lease: %v, want ErrLeaseNotFound", err)
	}
	if err := s.PutMember(ctx, cluster.Member{Name: "m1"}, id); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put member with expired lease: %v, want ErrLeaseNotFound", err)
	}
	if err := s.RevokeLease(ctx, id); err != nil {
		t.Fatalf("revoke of expired lease: %v, want nil", err)
	}
}

func TestKeepAliveHoldsLease(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	id, err := s.GrantLease(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutMember(ctx, cluster.Member{Name: "m1"}, id); err != nil {
		t.Fatal(err)
	}
	// Renewing every 200ms for well over the TTL keeps the key.
	until := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(until) {
		if _, err := s.KeepAliveOnce(ctx, id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ms, err := s.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ms["m1"]; !ok {
		t.Fatal("member key vanished although the lease was renewed")
	}
}

func TestRevokeLeaseDeletesKeysAtOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutMember(ctx, cluster.Member{Name: "m1"}, id); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := s.Campaign(ctx, "home", "m1", id, 0, cluster.Topology{}); err != nil || !ok {
		t.Fatalf("campaign: %v %v", ok, err)
	}
	if err := s.RevokeLease(ctx, id); err != nil {
		t.Fatal(err)
	}
	ms, err := s.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Leader(ctx, "home")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 || l != nil {
		t.Fatalf("after revoke: members %v leader %v", ms, l)
	}
	if _, err := s.KeepAliveOnce(ctx, id); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keepalive after revoke: %v", err)
	}
}

func TestPutMemberRequiresLeaseAndValidName(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	if err := s.PutMember(ctx, cluster.Member{Name: "m1"}, 0); err == nil {
		t.Fatal("put member without lease succeeded")
	}
	for _, name := range []string{"", "a/b", "a b", "a\x00"} {
		if err := s.PutMember(ctx, cluster.Member{Name: name}, 1); err == nil {
			t.Errorf("put member %q succeeded", name)
		}
	}
	if _, err := s.GrantLease(ctx, 0); err == nil {
		t.Fatal("grant lease with ttl 0 succeeded")
	}
}

func TestDeleteMember(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.RevokeLease(ctx, id) })
	for _, n := range []string{"m1", "m2"} {
		if err := s.PutMember(ctx, cluster.Member{Name: n}, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteMember(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMember(ctx, "absent"); err != nil {
		t.Fatal(err)
	}
	ms, err := s.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms["m2"].Name != "m2" {
		t.Fatalf("members = %v", ms)
	}
}

// A primary's report leaves its region's last position behind, and that
// survives the lease; a replica's report does not touch it.
func TestLastPrimaryOutlivesLease(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	if _, ok, err := s.LastPrimary(ctx, "home"); ok || err != nil {
		t.Fatalf("last primary before any report: %v %v", ok, err)
	}
	id, err := s.GrantLease(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	if err := s.PutMember(ctx, cluster.Member{Name: "a", Region: "home", Role: cluster.RolePrimary, Timeline: 3, LSN: 4096, UpdatedAt: at}, id); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMember(ctx, cluster.Member{Name: "b", Region: "home", Role: cluster.RoleReplica, Timeline: 3, LSN: 8192}, id); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeLease(ctx, id); err != nil {
		t.Fatal(err)
	}
	lp, ok, err := s.LastPrimary(ctx, "home")
	want := cluster.LastPrimary{Member: "a", Timeline: 3, LSN: 4096, At: at}
	if err != nil || !ok || lp != want {
		t.Fatalf("last primary after the lease: %+v %v %v, want %+v", lp, ok, err, want)
	}
	if _, ok, err := s.LastPrimary(ctx, "away"); ok || err != nil {
		t.Fatalf("another region's last primary: %v %v", ok, err)
	}
	if _, _, err := s.LastPrimary(ctx, "a/b"); err == nil {
		t.Fatal("a bad region name was accepted")
	}
	// The primary's member key went with the lease; the snapshot ignores
	// the last-primary key.
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.Members) != 0 {
		t.Fatalf("snapshot after revoke: %+v %v", snap.Members, err)
	}
}
