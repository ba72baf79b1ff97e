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
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/testutil"
)

// twoRegionConfig is the test cluster plus a standby region "away" of two
// members.
func twoRegionConfig(t *testing.T) config.Config {
	cfg := testutil.ClusterConfig(t, "rg")
	away := config.Region{Name: "away"}
	for _, z := range []string{"a", "b"} {
		away.Members = append(away.Members, config.Member{Name: "away-" + z, Zone: z, Host: "127.0.0.1",
			Port: testutil.FreePort(t), AdvertisePort: testutil.FreePort(t), MetricsPort: testutil.FreePort(t)})
	}
	away.Proxy = config.RegionProxy{WriterAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		ReaderAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), AdminAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))}
	cfg.Regions = append(cfg.Regions, away)
	return cfg
}

// upstreamPort is the port a standby's WAL receiver streams from (0: not
// streaming).
func upstreamPort(ctx context.Context, dsn string) (int, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var port int
	err = conn.QueryRow(ctx, "SELECT coalesce((SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'), 0)").Scan(&port)
	return port, err
}

func rowCount(ctx context.Context, dsn, marker string) (int, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM region_probe WHERE marker = $1", marker).Scan(&n)
	return n, err
}

// superDSNFunc connects to a member as the superuser (pg_stat_wal_receiver
// shows its sender only to one).
func superDSNFunc(t *testing.T, h *harness) func(admin.MemberStatus) string {
	t.Helper()
	adminCred, _, err := h.cfg.LoadSecrets()
	if err != nil {
		t.Fatal(err)
	}
	return func(m admin.MemberStatus) string {
		return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres connect_timeout=2", m.Host, m.Port, adminCred.User, adminCred.Password)
	}
}

func statusByName(s admin.ClusterStatus) map[string]admin.MemberStatus {
	out := map[string]admin.MemberStatus{}
	for _, m := range s.Members {
		out[m.Name] = m
	}
	return out
}

// waitRegionLayout waits until region's standby leader streams from
// primary and the region's other members from the standby leader, and
// returns the standby leader. No member of the region may report primary.
func waitRegionLayout(ctx context.Context, t *testing.T, h *harness, superDSN func(admin.MemberStatus) string, region string, primary admin.MemberStatus) admin.MemberStatus {
	t.Helper()
	var last string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		var leader admin.MemberStatus
		var others []admin.MemberStatus
		for _, m := range h.status().Members {
			if m.Region != region {
				continue
			}
			if m.Role == cluster.RolePrimary {
				t.Fatalf("%s of the standby region %s reports primary", m.Name, region)
			}
			if m.Leader {
				leader = m
			} else {
				others = append(others, m)
			}
		}
		if leader.Name == "" {
			last = "no standby leader yet"
			time.Sleep(200 * time.Millisecond)
			continue
		}
		lp, err := upstreamPort(ctx, superDSN(leader))
		ok := err == nil && lp == primary.Port
		last = fmt.Sprintf("standby leader %s streams from port %d (%v); primary %s is on %d", leader.Name, lp, err, primary.Name, primary.Port)
		for _, o := range others {
			op, err := upstreamPort(ctx, superDSN(o))
			if err != nil || op != leader.Port {
				ok = false
				last += fmt.Sprintf("; %s streams from %d (%v)", o.Name, op, err)
			}
		}
		if ok {
			return leader
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("standby region %s layout not reached: %s", region, last)
	return admin.MemberStatus{}
}

// refuseWrites checks, by trying, that every member of a standby region
// refuses a write.
func refuseWrites(ctx context.Context, t *testing.T, h *harness, superDSN func(admin.MemberStatus) string, region string) {
	t.Helper()
	for _, m := range h.status().Members {
		if m.Region != region {
			continue
		}
		conn, err := pgx.Connect(ctx, superDSN(m))
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		_, err = conn.Exec(ctx, "CREATE TABLE region_write_probe (x int)")
		conn.Close(ctx)
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("%s of the standby region %s accepted a write (err %v)", m.Name, region, err)
		}
	}
}

// TestStandbyRegionReplicates: the standby region elects a standby leader
// that streams from the primary region's primary; its other member
// cascades from it; the primary's synchronous quorum never names the
// standby region; after a failover in the primary region the standby
// leader re-points to the new primary by itself, and the region never runs
// a primary.
func TestStandbyRegionReplicates(t *testing.T) {
	h := startClusterConfig(t, twoRegionConfig(t), 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	superDSN := superDSNFunc(t, h)

	byName := statusByName
	waitLayout := func(primary admin.MemberStatus) admin.MemberStatus {
		t.Helper()
		return waitRegionLayout(ctx, t, h, superDSN, "away", primary)
	}
	// replicated writes a row on the primary and waits for it on every
	// member of the standby region.
	replicated := func(marker string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, h.primaryDSN())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS region_probe (marker text)"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO region_probe VALUES ($1)", marker); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		ms := byName(h.status())
		for _, name := range []string{"away-a", "away-b"} {
			deadline := time.Now().Add(30 * time.Second)
			for {
				n, err := rowCount(ctx, h.dsn(ms[name]), marker)
				if err == nil && n == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s did not replay %q: %d rows, %v", name, marker, n, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}

	primary := h.primary()
	if !strings.HasPrefix(primary.Name, "home-") {
		t.Fatalf("the primary %s is not in the primary region", primary.Name)
	}
	leader := waitLayout(primary)
	t.Logf("standby leader %s streams from %s", leader.Name, primary.Name)
	replicated("before")
	heartbeatsReach(ctx, t, h, superDSN, "away")
	regionProxyServes(ctx, t, h, "away")

	conn, err := pgx.Connect(ctx, h.dsn(primary))
	if err != nil {
		t.Fatal(err)
	}
	var ssn string
	if err := conn.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&ssn); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if strings.Contains(ssn, "away") {
		t.Fatalf("the primary's synchronous quorum names the standby region: %s", ssn)
	}

	// A failover in the primary region: the standby leader follows the new
	// primary by itself.
	if err := syscall.Kill(primary.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next := h.newPrimary(primary)
	if !strings.HasPrefix(next.Name, "home-") {
		t.Fatalf("the new primary %s is not in the primary region", next.Name)
	}
	leader = waitLayout(next)
	t.Logf("after the failover the standby leader %s streams from %s", leader.Name, next.Name)
	replicated("after")

	// The standby leader's node is lost: the other member takes the lead
	// and streams from the primary.
	if err := syscall.Kill(leader.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := h.sup.SignalAgent(leader.Name, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ms := byName(h.status())
		other := "away-a"
		if leader.Name == "away-a" {
			other = "away-b"
		}
		if ms[other].Leader {
			p, err := upstreamPort(ctx, superDSN(ms[other]))
			if err == nil && p == next.Port {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take the standby region's lead: %+v", other, ms[other])
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.checkSamples()
}

// heartbeatsReach checks that the primary's heartbeat row moves on every
// member of region and that they publish a lag in time, which region status
// shows for the region.
func heartbeatsReach(ctx context.Context, t *testing.T, h *harness, superDSN func(admin.MemberStatus) string, region string) {
	t.Helper()
	var first time.Time
	deadline := time.Now().Add(30 * time.Second)
	for {
		var problem string
		snap, err := h.sup.Store().Snapshot(ctx)
		if err != nil {
			problem = err.Error()
		} else {
			for _, r := range admin.BuildRegions(h.cfg, snap).Regions {
				if r.Name == region && (r.LagSeconds == nil || *r.LagSeconds > 5) {
					problem = fmt.Sprintf("region %s lag_seconds %v", region, r.LagSeconds)
				}
			}
			for _, m := range snap.Members {
				if m.Region == region && (m.HeartbeatLagMS == nil || *m.HeartbeatLagMS > 5000) {
					problem = fmt.Sprintf("%s heartbeat_lag_ms %v", m.Name, m.HeartbeatLagMS)
				}
			}
		}
		if problem == "" {
			for _, m := range h.status().Members {
				if m.Region != region {
					continue
				}
				var at time.Time
				conn, err := pgx.Connect(ctx, superDSN(m))
				if err == nil {
					err = conn.QueryRow(ctx, "SELECT beat_at FROM holdfast_heartbeat").Scan(&at)
					conn.Close(ctx)
				}
				switch {
				case err != nil:
					problem = fmt.Sprintf("%s: %v", m.Name, err)
				case first.IsZero():
					first = at
					problem = "heartbeat seen once"
				case !at.After(first):
					problem = fmt.Sprintf("%s: heartbeat %s not newer than %s", m.Name, at, first)
				}
			}
		}
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeats do not reach region %s: %s", region, problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// regionProxyServes checks region's own proxy: its reader lands on the
// region's replicas only, its writer on the global primary.
func regionProxyServes(ctx context.Context, t *testing.T, h *harness, region string) {
	t.Helper()
	rp, ok := h.cfg.RegionProxy(region)
	if !ok {
		t.Fatalf("region %s has no proxy", region)
	}
	adminCred, _, err := h.cfg.LoadSecrets()
	if err != nil {
		t.Fatal(err)
	}
	ports := map[int]string{}
	for _, r := range h.cfg.Regions {
		for _, m := range r.Members {
			ports[m.Port] = r.Name
		}
	}
	// server answers where a connection through addr landed: the member's
	// region and whether it is in recovery.
	server := func(addr string) (string, bool, error) {
		dsn := fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable&connect_timeout=5", adminCred.User, adminCred.Password, addr)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return "", false, err
		}
		defer conn.Close(context.Background())
		var port int
		var rec bool
		err = conn.QueryRow(ctx, "SELECT current_setting('port')::int, pg_is_in_recovery()").Scan(&port, &rec)
		return ports[port], rec, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 6; {
		reg, rec, err := server(rp.ReaderAddr)
		if err == nil && (reg != region || !rec) {
			t.Fatalf("the %s reader landed on a member of %q (in recovery %v)", region, reg, rec)
		}
		if err == nil {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %s reader: %v", region, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	reg, rec, err := server(rp.WriterAddr)
	if err != nil || rec || reg != h.primary().Region {
		t.Fatalf("the %s writer landed on %q (in recovery %v, err %v); the primary is in %s", region, reg, rec, err, h.primary().Region)
	}
}
