package supervisor_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
)

// TestStandbyLeaderDivergedIsRepaired leaves the standby region's leader
// with WAL the new primary never had, as an asynchronous standby can after
// a failover: the home replicas stop receiving, the primary commits with
// synchronous_commit = local (streamed to the standby leader only), and
// then dies. The new home primary's timeline forks off before the standby
// leader's WAL ends: streaming can never switch to it (the receiver only
// restarts over and over), and before the fix the member stayed on the old
// timeline for good. Now its agent reads the upstream's history, rewinds at
// once, and the region is back on the primary's timeline; meanwhile
// `region status` calls the region unhealthy.
func TestStandbyLeaderDivergedIsRepaired(t *testing.T) {
	h := startClusterConfig(t, twoRegionConfig(t), 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	superDSN := superDSNFunc(t, h)
	old := h.primary()
	leader := waitRegionLayout(ctx, t, h, superDSN, "away", old)

	// The home replicas stop receiving: their agents frozen (so nothing
	// re-points them), their receivers stopped by an empty primary_conninfo.
	ms := statusByName(h.status())
	var replicas []admin.MemberStatus
	for _, m := range ms {
		if m.Region == "home" && m.Name != old.Name {
			replicas = append(replicas, m)
		}
	}
	exec := func(m admin.MemberStatus, sqls ...string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, superDSN(m))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		for _, q := range sqls {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %s: %v", m.Name, q, err)
			}
		}
	}
	for _, r := range replicas {
		if err := syscall.Kill(r.AgentPID, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		exec(r, "ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, r := range replicas {
			if p, err := upstreamPort(ctx, superDSN(r)); err == nil && p == 0 {
				n++
			}
		}
		if n == len(replicas) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the home replicas' WAL receivers did not stop")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// WAL only the standby leader receives (commits that wait for no
	// standby: the synchronous ones receive nothing now).
	conn, err := pgx.Connect(ctx, superDSN(old))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SET synchronous_commit = local", "CREATE TABLE IF NOT EXISTS diverge_probe (x int)"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO diverge_probe SELECT g FROM generate_series(1, 100) g"); err != nil {
			t.Fatal(err)
		}
	}
	var oldLSN string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&oldLSN); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	deadline = time.Now().Add(30 * time.Second)
	for {
		var recv string
		c, err := pgx.Connect(ctx, superDSN(leader))
		if err == nil {
			err = c.QueryRow(ctx, "SELECT coalesce(pg_last_wal_receive_lsn()::text, '')").Scan(&recv)
			if err == nil {
				var past bool
				_ = c.QueryRow(ctx, "SELECT $1::pg_lsn >= $2::pg_lsn", recv, oldLSN).Scan(&past)
				c.Close(context.Background())
				if past {
					break
				}
			} else {
				c.Close(context.Background())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby leader did not receive up to %s (at %s, %v)", oldLSN, recv, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The primary dies; the home replicas come back and elect one of them,
	// whose timeline forks off before what the standby leader has.
	if err := syscall.Kill(old.AgentPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		exec(r, "ALTER SYSTEM RESET primary_conninfo", "SELECT pg_reload_conf()")
		if err := syscall.Kill(r.AgentPID, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	p := h.newPrimary(old)
	t.Logf("%s promoted on timeline %d; standby leader %s holds WAL up to %s of timeline %d", p.Name, p.Timeline, leader.Name, oldLSN, old.Timeline)

	// Until it is repaired the region says so; then every member of it is
	// on the primary's timeline and keeps up.
	sawUnhealthy := ""
	deadline = time.Now().Add(90 * time.Second)
	for {
		rs, err := admin.ReadRegions(ctx, h.sup.Store(), h.cfg)
		if err == nil {
			for _, r := range rs.Regions {
				if r.Name == "away" && !r.Healthy && sawUnhealthy == "" {
					sawUnhealthy = strings.Join(r.Problems, "; ")
				}
			}
		}
		st := h.status()
		pm := statusByName(st)[p.Name]
		done := pm.Role == cluster.RolePrimary
		for _, m := range st.Members {
			if m.Region == "away" && (m.State != cluster.StateRunning || m.Timeline != pm.Timeline || m.HeartbeatLag == nil || *m.HeartbeatLag > 5000) {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby region is not back on the primary's timeline: %+v", st.Members)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("standby region back on timeline %d within %s of the promotion; meanwhile: %s", p.Timeline, time.Since(start).Round(time.Millisecond), sawUnhealthy)
	if sawUnhealthy == "" {
		t.Error("region status never reported the standby region unhealthy while its leader was on the old timeline")
	}
	events, err := h.sup.Store().Events(ctx, 500)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events {
		if e.Member == leader.Name && e.Kind == cluster.EventRewind && strings.Contains(e.Message, "forked off") {
			found = true
			t.Logf("event: %s", e.Message)
		}
	}
	if !found {
		t.Errorf("no rewind event from %s saying its WAL left the new timeline's history", leader.Name)
	}
	// The rows only the old timeline had are gone from the standby region
	// as from the primary: it follows the primary's history.
	if err := rowsMatch(ctx, superDSN, p, statusByName(h.status())[leader.Name]); err != nil {
		t.Error(err)
	}
	h.checkSamples()
}

// rowsMatch compares the probe table on the primary and a standby.
func rowsMatch(ctx context.Context, superDSN func(admin.MemberStatus) string, primary, standby admin.MemberStatus) error {
	count := func(m admin.MemberStatus) (int, error) {
		c, err := pgx.Connect(ctx, superDSN(m))
		if err != nil {
			return 0, err
		}
		defer c.Close(context.Background())
		var n int
		err = c.QueryRow(ctx, "SELECT count(*) FROM diverge_probe").Scan(&n)
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			return 0, nil
		}
		return n, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err1 := count(primary)
		b, err2 := count(standby)
		if err1 == nil && err2 == nil && a == b {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("diverge_probe: %s has %d rows (%v), %s %d (%v)", primary.Name, a, err1, standby.Name, b, err2)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
