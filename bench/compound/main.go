// Command compound drives `holdfast up`'s default two regions through
// faults back to back, as real outages come (a primary frozen twice in a
// minute, a node that flaps, failovers in a row), under write load on the
// buffer and proxy paths, and reconciles every acknowledged write:
//
//   - faults cycle through kill -9 of the primary's postmaster, kill -9 of
//     its agent and postmaster, and SIGSTOP of its agent and of the
//     postmaster process alone (its backends and walsenders keep running)
//     for -pause, then SIGCONT; one every -every, -faults of them a run;
//   - then the buffer must drain (its stream empty), and every write
//     answered 202 (buffer) or COMMIT (proxy) must be in the table exactly
//     once, with accepted = committed = rows;
//   - the drain rate after the faults is compared with the steady drain
//     rate measured in the same run, right after it: a backlog as large as
//     the run's peak, built while the committer is held back on purpose
//     with no fault, on the same tables and under the same ingest.
//
// Usage (from the repository root): bench/compound.sh [-runs 20] [-faults 10] [-every 4s]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/bench/internal/up"
	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/drill"
	"github.com/holdfast/holdfast/internal/proc"
)

func main() {
	runs := flag.Int("runs", 1, "runs of -faults faults each (one cluster for all runs)")
	faults := flag.Int("faults", 10, "faults per run")
	every := flag.Duration("every", 4*time.Second, "time between faults")
	pause := flag.Duration("pause", 8*time.Second, "how long the pause fault keeps the agent and postmaster stopped")
	kinds := flag.String("kinds", "kill-postmaster,kill-node,pause", "fault kinds, cycled: kill-postmaster, kill-node, pause")
	bufferRate := flag.Float64("buffer-rate", 2000, "buffer path writes per second")
	proxyRate := flag.Float64("proxy-rate", 300, "proxy path writes per second (0: off)")
	drainTimeout := flag.Duration("drain-timeout", 5*time.Minute, "how long the buffer may take to drain after the last fault")
	keep := flag.Bool("keep", false, "keep the data directory (agent logs under logs/) even when nothing was lost")
	steadyHold := flag.Duration("steady-hold", 0, "how long the table lock builds the backlog of each run's steady drain (0: as long as it takes the ingest to build the run's peak backlog, 5-90 s)")
	flag.BoolVar(&traceDrain, "trace", false, "log the buffer's status once a second while it drains (commit rate, pending, stream batches, batches awaiting regions)")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	ctx := context.Background()

	kindList := strings.Split(*kinds, ",")
	for _, k := range kindList {
		if k != proc.FaultKillPostmaster && k != proc.FaultKillNode && k != proc.FaultPause {
			log.Fatalf("-kinds: unknown fault %q (kill-postmaster, kill-node, pause)", k)
		}
	}
	c := up.Start(ctx, up.Build(), up.Options{Name: "compound"})
	c.Keep = *keep
	defer func() { c.Stop() }()
	log.Printf("cluster up in %s", c.Dir)

	var total result
	for run := 1; run <= *runs; run++ {
		r := oneRun(ctx, c, run, runConfig{faults: *faults, every: *every, pause: *pause, kinds: kindList,
			bufferRate: *bufferRate, proxyRate: *proxyRate, drainTimeout: *drainTimeout})
		if r.bad() {
			c.Keep = true
		}
		if err := c.WaitStandbyRegion(ctx, 3*time.Minute); err != nil {
			c.Keep = true
			total.add(r)
			log.Printf("after run %d: %v", run, err)
			break
		}
		// The reference for this run's drain: the same tables, the same
		// ingest, a backlog as large as the run's peak, and no fault.
		hold := *steadyHold
		if hold == 0 {
			hold = time.Duration(float64(r.peakPending) / *bufferRate * float64(time.Second))
			hold = min(max(hold, 5*time.Second), 90*time.Second)
		}
		steady, steadyCaught := steadyDrain(ctx, c, *bufferRate, hold)
		log.Printf("run %d: steady drain (peak backlog %d; one built behind a table lock held %s, no fault): %.0f writes/s while a backlog was left, %.0f to caught up", run, r.peakPending, hold.Round(time.Millisecond), steady, steadyCaught)
		r.steadyRate, r.steadyCaughtUp = []float64{steady}, []float64{steadyCaught}
		r.print(fmt.Sprintf("run %d", run))
		total.add(r)
	}
	fmt.Printf("\nCompound faults: %d run(s) of %d faults (%s), %s apart, pause %s\n", *runs, *faults, *kinds, *every, *pause)
	total.print("total")
	if total.bad() {
		log.Printf("FAILED: data directory kept at %s (agent logs in logs/)", c.Dir)
		c.Stop()
		os.Exit(1)
	}
}

type runConfig struct {
	faults       int
	every, pause time.Duration
	kinds        []string
	bufferRate   float64
	proxyRate    float64
	drainTimeout time.Duration
}

// pathResult reconciles one path's writes.
type pathResult struct {
	ok, errors, unknown int
	lost, dup, rows     int
	unknownStored       int
}

type result struct {
	runs                  int
	buffer, proxy         pathResult
	accepted, committed   uint64
	counterMismatch       int
	drain                 []time.Duration
	drainRate, steadyRate []float64
	// The same from the peak to caught up, tail included.
	caughtUpRate, steadyCaughtUp []float64
	// peakPending is the largest backlog of the last run (writes).
	peakPending int
	undrained   int
	// healthy is, per run, how long after the last fault every region was
	// healthy (-1: not within the bound).
	healthy []time.Duration
}

func (r *result) bad() bool {
	return r.buffer.lost+r.buffer.dup+r.proxy.lost+r.proxy.dup+r.counterMismatch+r.undrained > 0
}

func (r *result) add(o result) {
	r.runs += o.runs
	for _, p := range []struct{ to, from *pathResult }{{&r.buffer, &o.buffer}, {&r.proxy, &o.proxy}} {
		p.to.ok += p.from.ok
		p.to.errors += p.from.errors
		p.to.unknown += p.from.unknown
		p.to.lost += p.from.lost
		p.to.dup += p.from.dup
		p.to.rows += p.from.rows
		p.to.unknownStored += p.from.unknownStored
	}
	r.accepted += o.accepted
	r.committed += o.committed
	r.counterMismatch += o.counterMismatch
	r.drain = append(r.drain, o.drain...)
	r.drainRate = append(r.drainRate, o.drainRate...)
	r.steadyRate = append(r.steadyRate, o.steadyRate...)
	r.caughtUpRate = append(r.caughtUpRate, o.caughtUpRate...)
	r.steadyCaughtUp = append(r.steadyCaughtUp, o.steadyCaughtUp...)
	r.undrained += o.undrained
	r.healthy = append(r.healthy, o.healthy...)
}

func (r *result) print(label string) {
	fmt.Printf("  %s: %d run(s)\n", label, r.runs)
	fmt.Printf("  %-7s %9s %7s %8s %7s %5s %9s\n", "path", "acked", "errors", "unknown", "rows", "lost", "dup")
	for _, p := range []struct {
		name string
		r    pathResult
	}{{"buffer", r.buffer}, {"proxy", r.proxy}} {
		fmt.Printf("  %-7s %9d %7d %8d %7d %5d %9d\n", p.name, p.r.ok, p.r.errors, p.r.unknown, p.r.rows, p.r.lost, p.r.dup)
	}
	fmt.Printf("  buffer counters: accepted %d, committed %d; runs where accepted, committed and rows differ: %d\n", r.accepted, r.committed, r.counterMismatch)
	if len(r.drain) > 0 {
		var worst time.Duration
		for _, d := range r.drain {
			worst = max(worst, d)
		}
		fmt.Printf("  caught up (oldest pending < 2 s, ingest going on) after the last fault: worst %s; runs not caught up or not drained: %d\n", worst.Round(time.Millisecond), r.undrained)
	}
	if len(r.healthy) > 0 {
		var worst time.Duration
		late := 0
		for _, d := range r.healthy {
			if d < 0 || d > time.Minute {
				late++
			}
			if d < 0 {
				d = 3 * time.Minute
			}
			worst = max(worst, d)
		}
		fmt.Printf("  every region healthy (each member on the primary's timeline, lag < 5 s) after the last fault: worst %s; runs over 60 s: %d\n", worst.Round(time.Millisecond), late)
	}
	for i := range r.drainRate {
		if i < len(r.steadyRate) && r.steadyRate[i] > 0 {
			label := fmt.Sprintf("run %d of these: ", i+1)
			if len(r.drainRate) == 1 {
				label = ""
			}
			fmt.Printf("  %sdrain after the faults %.0f writes/s, steady drain %.0f writes/s: ratio %.2f", label, r.drainRate[i], r.steadyRate[i], r.drainRate[i]/r.steadyRate[i])
			if i < len(r.caughtUpRate) && i < len(r.steadyCaughtUp) && r.steadyCaughtUp[i] > 0 {
				fmt.Printf(" (to caught up, tail included: %.0f / %.0f = %.2f)", r.caughtUpRate[i], r.steadyCaughtUp[i], r.caughtUpRate[i]/r.steadyCaughtUp[i])
			}
			fmt.Println()
		}
	}
}

// oneRun injects cfg.faults faults under load, drains and reconciles.
func oneRun(ctx context.Context, c *up.Cluster, run int, cfg runConfig) result {
	res := result{runs: 1}
	name := fmt.Sprintf("compound-%d-%d", time.Now().Unix(), run)
	before := bufferStatus(ctx, c)

	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	loads := map[string]*drill.Load{}
	for _, p := range []struct {
		path string
		rate float64
	}{{"buffer", cfg.bufferRate}, {"proxy", cfg.proxyRate}} {
		if p.rate <= 0 {
			continue
		}
		w, err := c.Runner.NewWriter(p.path)
		if err != nil {
			log.Fatal(err)
		}
		l := &drill.Load{Drill: name + "-" + p.path, Writer: w, Rate: p.rate, Concurrency: 16, Timeout: 10 * time.Second}
		loads[p.path] = l
		wg.Add(1)
		go func() { defer wg.Done(); defer w.Close(); l.Run(loadCtx) }()
	}

	var resumes sync.WaitGroup
	next := time.Now().Add(cfg.every)
	for i := 0; i < cfg.faults; i++ {
		// Every fault waits its interval, also after a wait for a primary.
		time.Sleep(time.Until(next))
		kind := cfg.kinds[i%len(cfg.kinds)]
		p, ok := waitPrimary(ctx, c, 15*time.Second)
		if !ok {
			log.Printf("run %d fault %d: no primary within 15s; skipping", run, i+1)
			next = time.Now().Add(cfg.every)
			continue
		}
		next = time.Now().Add(cfg.every)
		log.Printf("run %d fault %d: %s of %s (agent %d, postmaster %d, timeline %d)", run, i+1, kind, p.Name, p.AgentPID, p.PID, p.Timeline)
		resumed, err := proc.MemberFault(kind, p.AgentPID, p.PID, cfg.pause)
		if err != nil {
			log.Printf("run %d fault %d: %v", run, i+1, err)
		}
		resumes.Add(1)
		go func() { defer resumes.Done(); <-resumed }()
	}
	lastFault := time.Now()
	// Every region healthy: each member running on the primary's timeline,
	// less than 5 s behind (holdfast region status).
	healthy := make(chan time.Duration, 1)
	go func() { healthy <- regionsHealthy(ctx, c, lastFault, 3*time.Minute) }()
	// Ingest goes on while the buffer catches up: caught up when the
	// oldest pending write is younger than 2 s.
	tr := newRateTracker(ctx, c)
	caughtUp := time.Time{}
	for deadline := time.Now().Add(cfg.drainTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st := tr.sample()
		if time.Since(lastFault) > cfg.every && st.OldestPendingSeconds < 2 {
			caughtUp = time.Now()
			break
		}
	}
	res.drainRate = append(res.drainRate, tr.drainRate())
	res.caughtUpRate = append(res.caughtUpRate, tr.caughtUpRate())
	res.peakPending = tr.peak()
	stopLoad()
	wg.Wait()
	resumes.Wait()
	loadEnd := time.Now()

	// Drain: the stream empty, nothing pending, nothing awaiting a region.
	var drainedAt time.Time
	for deadline := time.Now().Add(cfg.drainTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if bufferStatus(ctx, c).Drained {
			drainedAt = time.Now()
			break
		}
	}
	after := bufferStatus(ctx, c)
	if caughtUp.IsZero() || drainedAt.IsZero() {
		res.undrained++
		log.Printf("run %d: not caught up or not drained within %s: %d pending, %d stream batches", run, cfg.drainTimeout, after.Pending, after.StreamBatches)
	} else {
		res.drain = append(res.drain, caughtUp.Sub(lastFault))
	}
	res.healthy = append(res.healthy, <-healthy)
	log.Printf("run %d: caught up %s after the last fault (drain %.0f writes/s), load ended %s after it, drained %s after it",
		run, durOr(caughtUp, lastFault), tr.drainRate(), loadEnd.Sub(lastFault).Round(time.Millisecond), durOr(drainedAt, lastFault))

	if err := c.Runner.WaitHealthy(ctx, 2*time.Minute); err != nil {
		log.Printf("run %d: %v", run, err)
	}
	p, ok := waitPrimary(ctx, c, time.Minute)
	if !ok {
		log.Fatal("no primary to reconcile against")
	}
	conn, err := pgx.Connect(ctx, c.SuperDSN(p, c.Cfg.Postgres.AppDatabase))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(context.Background())
	for path, l := range loads {
		stored, err := drill.Stored(ctx, conn, l.Drill)
		if err != nil {
			log.Fatal(err)
		}
		pr := reconcile(l.Records(), stored)
		if path == "buffer" {
			res.buffer = pr
			res.accepted, res.committed = after.Accepted-before.Accepted, after.Committed-before.Committed
			if res.accepted != res.committed || int(res.committed) != pr.rows {
				res.counterMismatch++
			}
		} else {
			res.proxy = pr
		}
		if pr.lost > 0 || pr.dup > 0 {
			for _, r := range l.Records() {
				if r.Outcome == drill.OK && stored[r.ID] != 1 {
					log.Printf("run %d %s: id %s sent %s acked %s stored %d times", run, path, r.ID, r.Sent.Format("15:04:05.000"), r.Done.Format("15:04:05.000"), stored[r.ID])
				}
			}
		}
	}
	return res
}

func durOr(t, from time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(from).Round(time.Millisecond).String()
}

func reconcile(records []drill.Record, stored map[string]int) pathResult {
	var pr pathResult
	for _, n := range stored {
		pr.rows += n
		if n > 1 {
			pr.dup += n - 1
		}
	}
	for _, r := range records {
		switch r.Outcome {
		case drill.OK:
			pr.ok++
			if stored[r.ID] == 0 {
				pr.lost++
			}
		case drill.Error:
			pr.errors++
		case drill.Unknown:
			pr.unknown++
			if stored[r.ID] > 0 {
				pr.unknownStored++
			}
		}
	}
	return pr
}

// waitPrimary waits for a running primary with known pids.
func waitPrimary(ctx context.Context, c *up.Cluster, timeout time.Duration) (admin.MemberStatus, bool) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := admin.Status(ctx, c.Sup.Store(), c.Cfg)
		if err == nil {
			if p, ok := st.PrimaryMember(); ok && p.PID > 0 && p.AgentPID > 0 && p.State == cluster.StateRunning {
				return p, true
			}
		}
		if time.Now().After(deadline) {
			return admin.MemberStatus{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bufferStatus(ctx context.Context, c *up.Cluster) buffer.Status {
	for i := 0; ; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.Cfg.API.Addr+"/v1/buffer/status", nil)
		req.Header.Set("Authorization", "Bearer "+c.Runner.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var st buffer.Status
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return st
			}
		}
		if i == 50 {
			log.Fatalf("buffer status: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rateTracker samples the buffer's committed counter and keeps the best
// commit rate over 5 s.
// traceDrain: -trace.
var traceDrain bool

// rateTracker samples the buffer's status while a backlog drains.
type rateTracker struct {
	ctx     context.Context
	c       *up.Cluster
	at      []time.Time
	counts  []uint64 // committed
	pending []int
	traced  time.Time
}

func newRateTracker(ctx context.Context, c *up.Cluster) *rateTracker {
	return &rateTracker{ctx: ctx, c: c}
}

func (t *rateTracker) sample() buffer.Status {
	st := bufferStatus(t.ctx, t.c)
	now := time.Now()
	t.at, t.counts, t.pending = append(t.at, now), append(t.counts, st.Committed), append(t.pending, st.Pending)
	if traceDrain && now.Sub(t.traced) >= time.Second && len(t.at) > 1 {
		n := len(t.at)
		for i := n - 2; i >= 0; i-- {
			if d := now.Sub(t.at[i]); d >= time.Second || i == 0 {
				log.Printf("drain trace: %.0f writes/s committed, %d pending, %d stream batches, %d awaiting regions, %d redelivered, %d duplicates, %d transient retries",
					float64(st.Committed-t.counts[i])/d.Seconds(), st.Pending, st.StreamBatches, st.AwaitingRegions, st.Redelivered, st.Duplicates, st.TransientRetries)
				break
			}
		}
		t.traced = now
	}
	return st
}

// drainRate is how fast the backlog went while there was one: the writes
// committed from the sample where the most writes were pending (the
// database takes writes again, or the lock went) to the first sample
// where a tenth of that peak or less was left, over that time. Stalls
// after the peak (a later failover) count; the outage before it, when
// nothing could drain, does not; nor does the tail, where the ingest
// (2,000 writes/s), not the committer, sets the pace and the last writes
// wait to be old enough to tell. Ingest goes on meanwhile, in the steady
// drain as after the faults.
func (t *rateTracker) drainRate() float64 {
	top := t.peakAt()
	if top < 0 {
		return 0
	}
	end := len(t.at) - 1
	for i := top + 1; i < len(t.at); i++ {
		if t.pending[i] <= t.pending[top]/10 {
			end = i
			break
		}
	}
	return t.rate(top, end)
}

// caughtUpRate is the committed rate from the peak to the last sample
// (caught up: the oldest pending write younger than 2 s), tail included:
// the measure before 2026-12-08.
func (t *rateTracker) caughtUpRate() float64 {
	top := t.peakAt()
	if top < 0 {
		return 0
	}
	return t.rate(top, len(t.at)-1)
}

// peakAt is the sample with the most writes pending (-1: too few).
func (t *rateTracker) peakAt() int {
	if len(t.at) < 2 {
		return -1
	}
	top := 0
	for i, p := range t.pending {
		if p >= t.pending[top] {
			top = i
		}
	}
	return top
}

func (t *rateTracker) rate(from, to int) float64 {
	d := t.at[to].Sub(t.at[from]).Seconds()
	if to <= from || d <= 0 {
		return 0
	}
	return float64(t.counts[to]-t.counts[from]) / d
}

// peak is the largest backlog sampled (0: too few samples).
func (t *rateTracker) peak() int {
	if i := t.peakAt(); i >= 0 {
		return t.pending[i]
	}
	return 0
}

// steadyDrain measures the committer's drain rate with no fault: ingest
// runs while a superuser session holds an exclusive lock on the drills'
// table for hold (the committer waits on it, and a backlog builds), then
// the lock goes and the backlog drains; its drainRate is the reference.
func steadyDrain(ctx context.Context, c *up.Cluster, rate float64, hold time.Duration) (bulk, caughtUp float64) {
	p, ok := waitPrimary(ctx, c, time.Minute)
	if !ok {
		log.Fatal("steady drain: no primary")
	}
	conn, err := pgx.Connect(ctx, c.SuperDSN(p, c.Cfg.Postgres.AppDatabase))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE drill_writes IN EXCLUSIVE MODE"); err != nil {
		log.Fatal(err)
	}
	w, err := c.Runner.NewWriter("buffer")
	if err != nil {
		log.Fatal(err)
	}
	lctx, stop := context.WithCancel(ctx)
	l := &drill.Load{Drill: fmt.Sprintf("steady-%d", time.Now().Unix()), Writer: w, Rate: rate, Concurrency: 16, Timeout: 10 * time.Second, Discard: true}
	done := make(chan struct{})
	go func() { defer close(done); defer w.Close(); l.Run(lctx) }()
	time.Sleep(hold)
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	tr := newRateTracker(ctx, c)
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st := tr.sample(); st.OldestPendingSeconds < 2 {
			break
		}
	}
	stop()
	<-done
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && !bufferStatus(ctx, c).Drained; {
		time.Sleep(100 * time.Millisecond)
	}
	return tr.drainRate(), tr.caughtUpRate()
}

// regionsHealthy waits until every region is healthy, and returns how long
// after since that was (-1 if not within timeout).
func regionsHealthy(ctx context.Context, c *up.Cluster, since time.Time, timeout time.Duration) time.Duration {
	var last []string
	var logged string
	var loggedAt time.Time
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		rs, err := admin.ReadRegions(ctx, c.Sup.Store(), c.Cfg)
		if err != nil {
			continue
		}
		ok := len(rs.Regions) > 0
		last = last[:0]
		for _, r := range rs.Regions {
			if !r.Healthy {
				ok = false
				last = append(last, r.Problems...)
			}
		}
		if ok {
			return time.Since(since)
		}
		// What keeps a region unhealthy, when it changes (at most every 5 s):
		// the cause of a slow recovery is in the log, not only that it was.
		if now := fmt.Sprint(last); now != logged && time.Since(since) > 10*time.Second && time.Since(loggedAt) > 5*time.Second {
			log.Printf("regions not healthy %s after the last fault: %v", time.Since(since).Round(time.Second), last)
			logged, loggedAt = now, time.Now()
		}
	}
	log.Printf("regions not healthy %s after the last fault: %v", timeout, last)
	return -1
}
