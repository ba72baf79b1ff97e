// Command region measures the global cluster on this machine, with
// `holdfast up`'s default two regions (home: three members, away: two):
//
//	lag:        replication lag to the standby region, end to end, under
//	            pgbench TPC-B against the primary, and idle (the reference
//	            in the same run); with PostgreSQL's own replay_lag of the
//	            standby leader for comparison;
//	switchover: the write pause of a region switchover (region-switchover
//	            drill, proxy and buffer paths, there and back);
//	outage:     the region-outage drill on the buffer path, with short
//	            canary settings and with the defaults: from the outage to
//	            the canary's decision, the promotion and the first write
//	            applied on the new primary.
//
// Lag is sampled by polling the standby leader's copy of the heartbeat row
// every millisecond: a heartbeat written at T (primary clock) and first
// seen at S gives S - T. Both clocks are this machine's.
//
// Usage (from the repository root): bench/region.sh [-lag 30s] [-clients 4] [-runs 3] [-default-canary]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/bench/internal/up"
	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/drill"
)

func main() {
	lagFor := flag.Duration("lag", 30*time.Second, "pgbench duration of the lag measurement (and of the idle reference)")
	clients := flag.Int("clients", 4, "pgbench clients")
	runs := flag.Int("runs", 3, "runs of each drill")
	defaultCanary := flag.Bool("default-canary", true, "also run one region outage with the default canary settings (10s x 3: about a minute)")
	flag.Parse()
	log.SetFlags(log.Ltime)
	ctx := context.Background()

	bin := up.Build()
	c := start(ctx, bin, 10*time.Second, 3)
	lag(ctx, c, *lagFor, *clients)
	switchovers(ctx, c, *runs)
	c.Stop()

	// Short canary settings: a probe every second, 3 failures.
	c = start(ctx, bin, time.Second, 3)
	outages(ctx, c, *runs, "short canary (1s x 3)")
	c.Stop()
	if *defaultCanary {
		c = start(ctx, bin, 10*time.Second, 3)
		outages(ctx, c, 1, "default canary (10s x 3)")
		c.Stop()
	}
}

type clusterUnderTest = up.Cluster

func start(ctx context.Context, bin string, canaryInterval time.Duration, canaryFailures int) *clusterUnderTest {
	return up.Start(ctx, bin, up.Options{Name: "region", Tune: func(cfg *config.Config) {
		cfg.Failover.CanaryInterval = config.Duration(canaryInterval)
		cfg.Failover.CanaryFailures = canaryFailures
	}})
}

func waitStandbyRegion(ctx context.Context, c *clusterUnderTest) {
	if err := c.WaitStandbyRegion(ctx, 3*time.Minute); err != nil {
		log.Fatal(err)
	}
}

// lag samples the standby leader's heartbeat idle, then under pgbench.
func lag(ctx context.Context, c *clusterUnderTest, d time.Duration, clients int) {
	primary := c.MustMember(ctx, func(m admin.MemberStatus, _ admin.Regions) bool { return m.Leader && m.Role == "primary" })
	leader := c.MustMember(ctx, func(m admin.MemberStatus, rs admin.Regions) bool {
		for _, r := range rs.Regions {
			if r.Role == "standby" && r.Leader == m.Name {
				return true
			}
		}
		return false
	})
	log.Printf("lag: primary %s, standby leader %s; pgbench -i", primary.Name, leader.Name)
	pgbench := filepath.Join(c.Cfg.Postgres.BinDir, "pgbench")
	cred, _, _ := c.Cfg.LoadSecrets()
	env := append(os.Environ(), "PGPASSWORD="+cred.Password)
	base := []string{"-h", primary.Host, "-p", fmt.Sprint(primary.Port), "-U", cred.User}
	initCmd := exec.Command(pgbench, append(append([]string{"-i", "-q", "-s", "10"}, base...), "postgres")...)
	initCmd.Env, initCmd.Stderr = env, os.Stderr
	if err := initCmd.Run(); err != nil {
		log.Fatalf("pgbench -i: %v", err)
	}
	idle, idleReplay := sample(ctx, c, leader, primary, d, nil)
	var tps string
	loaded, loadedReplay := sample(ctx, c, leader, primary, d, func(sctx context.Context) {
		// pgbench ends 2 s before the sampling does, so that it prints its
		// summary (tps) before the context would kill it.
		cmd := exec.CommandContext(sctx, pgbench, append(append([]string{"-c", fmt.Sprint(clients), "-j", "2", "-T", fmt.Sprint(max(int(d.Seconds())-2, 1)), "-n"}, base...), "postgres")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil && sctx.Err() == nil {
			log.Printf("pgbench: %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "tps") {
				tps = l
			}
		}
	})
	fmt.Printf("\nReplication lag to the standby region (heartbeat row, first seen on %s), %s each:\n", leader.Name, d)
	fmt.Printf("  %-28s %8s %8s %8s %8s %8s\n", "", "samples", "p50", "p90", "p99", "max")
	row := func(name string, v []time.Duration) {
		fmt.Printf("  %-28s %8d %8s %8s %8s %8s\n", name, len(v), pct(v, 50), pct(v, 90), pct(v, 99), pct(v, 100))
	}
	row("idle (reference)", idle)
	row(fmt.Sprintf("pgbench TPC-B, %d clients", clients), loaded)
	row("  PostgreSQL replay_lag, idle", idleReplay)
	row("  PostgreSQL replay_lag, load", loadedReplay)
	if p := pctD(idle, 99); p > 0 {
		fmt.Printf("  p99 under load / idle: %.2fx   (%s)\n", float64(pctD(loaded, 99))/float64(p), strings.TrimSpace(tps))
	}
}

// sample polls the leader's heartbeat row every millisecond for d (while
// load runs, if given), and the primary's view of the leader's replay_lag
// every 100 ms.
func sample(ctx context.Context, c *clusterUnderTest, leader, primary admin.MemberStatus, d time.Duration, load func(context.Context)) (lags, replay []time.Duration) {
	sctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	done := make(chan struct{})
	if load != nil {
		go func() { defer close(done); load(sctx) }()
	} else {
		close(done)
	}
	conn, err := pgx.Connect(ctx, c.SuperDSN(leader, "postgres"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(context.Background())
	pconn, err := pgx.Connect(ctx, c.SuperDSN(primary, "postgres"))
	if err != nil {
		log.Fatal(err)
	}
	defer pconn.Close(context.Background())
	var last time.Time
	nextReplay := time.Now()
	for sctx.Err() == nil {
		var at time.Time
		if err := conn.QueryRow(ctx, "SELECT beat_at FROM holdfast_heartbeat").Scan(&at); err != nil {
			log.Fatal(err)
		}
		now := time.Now()
		if at.After(last) {
			if !last.IsZero() { // the first one may have arrived long ago
				lags = append(lags, now.Sub(at))
			}
			last = at
		}
		if now.After(nextReplay) {
			var ms *float64
			_ = pconn.QueryRow(ctx, "SELECT extract(epoch FROM replay_lag) * 1000 FROM pg_stat_replication WHERE application_name = $1", leader.Name).Scan(&ms)
			if ms != nil {
				replay = append(replay, time.Duration(*ms*float64(time.Millisecond)))
			}
			nextReplay = now.Add(100 * time.Millisecond)
		}
		time.Sleep(time.Millisecond)
	}
	<-done
	return lags, replay
}

func pctD(v []time.Duration, p int) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func pct(v []time.Duration, p int) string {
	if len(v) == 0 {
		return "-"
	}
	return pctD(v, p).Round(100 * time.Microsecond).String()
}

// switchovers runs region-switchover drills there and back on the proxy
// and buffer paths.
func switchovers(ctx context.Context, c *clusterUnderTest, runs int) {
	fmt.Printf("\nRegion switchover (region-switchover drill, 200 writes/s, there and back): write pause = longest gap between acknowledged writes\n")
	fmt.Printf("  %-8s %6s %10s %10s %10s %8s %8s %6s %6s\n", "path", "runs", "min", "median", "max", "errors", "unknown", "lost", "dup")
	for _, path := range []string{"proxy", "buffer"} {
		var down []time.Duration
		var errs, unk, lost, dup int
		for i := 0; i < runs*2; i++ {
			rep, err := c.Runner.Run(ctx, drill.RunConfig{Scenario: "region-switchover", Path: path, Rate: 200, Duration: 6 * time.Second})
			if err != nil {
				log.Fatalf("region-switchover on %s: %v", path, err)
			}
			log.Printf("region-switchover %s run %d: downtime %d ms, errors %d unknown %d lost %d dup %d", path, i+1, rep.DowntimeMS, rep.Errors, rep.Unknown, rep.LostAcked, rep.Duplicates)
			down = append(down, time.Duration(rep.DowntimeMS)*time.Millisecond)
			errs, unk, lost, dup = errs+rep.Errors, unk+rep.Unknown, lost+rep.LostAcked, dup+rep.Duplicates
			waitStandbyRegion(ctx, c)
		}
		fmt.Printf("  %-8s %6d %10s %10s %10s %8d %8d %6d %6d\n", path, len(down), pct(down, 0), pct(down, 50), pct(down, 100), errs, unk, lost, dup)
	}
}

// outages runs region-outage drills on the buffer path, failing back
// after each.
func outages(ctx context.Context, c *clusterUnderTest, runs int, label string) {
	var detected, promoted, restored, decisionToWrite []time.Duration
	var lost, dup, errs int
	for i := 0; i < runs; i++ {
		rep, err := c.Runner.Run(ctx, drill.RunConfig{Scenario: "region-outage", Path: "buffer", Rate: 200, Duration: 9 * time.Second})
		if err != nil {
			log.Fatalf("region-outage: %v", err)
		}
		r := rep.Region
		log.Printf("region-outage (%s) run %d: %+v; lost %d dup %d errors %d", label, i+1, *r, rep.LostAcked, rep.Duplicates, rep.Errors)
		ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
		detected, promoted, restored = append(detected, ms(r.DetectedMS)), append(promoted, ms(r.PromotedMS)), append(restored, ms(r.TrafficRestoredMS))
		decisionToWrite = append(decisionToWrite, ms(r.TrafficRestoredMS-r.DetectedMS))
		lost, dup, errs = lost+rep.LostAcked, dup+rep.Duplicates, errs+rep.Errors
		waitStandbyRegion(ctx, c)
		// Fail back, so that every run starts from home.
		if _, err := admin.RegionSwitchover(ctx, c.Sup.Store(), c.Cfg, r.From, func(string) {}); err != nil {
			log.Fatalf("failback: %v", err)
		}
		waitStandbyRegion(ctx, c)
	}
	fmt.Printf("\nRegion outage, %s, buffer path at 200 writes/s, %d run(s) (min / median / max, since the outage):\n", label, runs)
	row := func(name string, v []time.Duration) {
		fmt.Printf("  %-40s %10s %10s %10s\n", name, pct(v, 0), pct(v, 50), pct(v, 100))
	}
	row("canary decision", detected)
	row("promoted", promoted)
	row("first write applied on the new primary", restored)
	row("decision -> first write", decisionToWrite)
	fmt.Printf("  lost acknowledged writes %d, duplicates %d, errors %d\n", lost, dup, errs)
}
