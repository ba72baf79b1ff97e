package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The failover measurement: pgbench TPC-B with per-transaction logging
// through an endpoint, kill -9 of the primary's postmaster part-way, and
// the stalls the clients saw, computed from pgbench's log.
const (
	failoverClients  = 16
	failoverDuration = 20 * time.Second
	failoverKillAt   = 8 * time.Second
	failoverMaxTries = 10
	// pgbench is killed this long after -T would have ended it: some
	// clients may hang after the failover (a known proxy bug).
	failoverGrace = 30 * time.Second
)

type failoverResult struct {
	Target       string        `json:"target"`
	KilledMember string        `json:"killed_member"`
	KillAfter    time.Duration `json:"kill_after_ns"`
	stallStats
	pgbenchResult
	LogPartial bool `json:"log_partial,omitempty"` // pgbench was killed before flushing its log
}

// stallStats is what the clients saw, from pgbench's per-transaction log.
type stallStats struct {
	// GlobalGap is the longest time with no successful transaction at all;
	// GlobalGapFrom is when it began, relative to the kill.
	GlobalGap     time.Duration `json:"global_gap_ns"`
	GlobalGapFrom time.Duration `json:"global_gap_from_ns"`
	// ClientGap is the longest time between two successful transactions of
	// one client, over the clients that kept going.
	ClientGap time.Duration `json:"client_gap_ns"`
	// Stopped counts the clients that stopped committing after the kill
	// (aborted, or hung): no successful transaction in the second half of
	// the time between the kill and the end of the run, or none at all.
	Stopped int `json:"stopped_clients"`
	// Resumed: some client kept committing after the kill. If none did,
	// LastCommit is the last successful transaction, relative to the kill.
	Resumed    bool          `json:"resumed"`
	LastCommit time.Duration `json:"last_commit_ns"`
	Logged     int           `json:"logged_transactions"`
}

// txEntry is one line of pgbench's per-transaction log.
type txEntry struct {
	client int
	at     time.Time // completion
	ok     bool
}

// parseTxLog reads a pgbench (PostgreSQL 15) per-transaction log:
// client_id transaction_no time script_no time_epoch time_us [retries];
// time is the latency in microseconds, or a word (failed, serialization,
// deadlock, skipped) for a transaction that did not succeed.
func parseTxLog(r *bufio.Scanner) ([]txEntry, error) {
	var out []txEntry
	for n := 1; r.Scan(); n++ {
		f := strings.Fields(r.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return out, fmt.Errorf("line %d: %d fields, want at least 6", n, len(f))
		}
		client, err1 := strconv.Atoi(f[0])
		sec, err2 := strconv.ParseInt(f[4], 10, 64)
		usec, err3 := strconv.ParseInt(f[5], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return out, fmt.Errorf("line %d: %q is not a pgbench log line", n, r.Text())
		}
		_, lerr := strconv.ParseInt(f[2], 10, 64)
		out = append(out, txEntry{client: client, at: time.Unix(sec, usec*1000), ok: lerr == nil})
	}
	return out, r.Err()
}

// analyzeStalls computes the stalls of clients clients around a kill at
// kill; a client that committed nothing from resumeBy on has stopped.
func analyzeStalls(entries []txEntry, clients int, kill, resumeBy time.Time) stallStats {
	var s stallStats
	var all []time.Time
	byClient := map[int][]time.Time{}
	for _, e := range entries {
		if !e.ok {
			continue
		}
		all = append(all, e.at)
		byClient[e.client] = append(byClient[e.client], e.at)
	}
	s.Logged = len(all)
	sortTimes(all)
	var from time.Time
	if s.GlobalGap, from = longestGap(all); s.GlobalGap > 0 {
		s.GlobalGapFrom = from.Sub(kill)
	}
	if len(all) > 0 {
		s.LastCommit = all[len(all)-1].Sub(kill)
	}
	s.Stopped = clients
	for _, ts := range byClient {
		sortTimes(ts)
		if ts[len(ts)-1].Before(resumeBy) {
			continue
		}
		s.Stopped--
		s.Resumed = true
		g, _ := longestGap(ts)
		s.ClientGap = max(s.ClientGap, g)
	}
	s.Stopped = max(s.Stopped, 0)
	return s
}

func sortTimes(ts []time.Time) { sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) }) }

// longestGap returns the longest gap between consecutive times of ts
// (sorted) and when it began.
func longestGap(ts []time.Time) (gap time.Duration, from time.Time) {
	for i := 1; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-1]); d > gap {
			gap, from = d, ts[i-1]
		}
	}
	return gap, from
}

// measureFailover runs pgbench TPC-B through target's endpoint and kills
// the primary's postmaster failoverKillAt after pgbench started.
func (b *bench) measureFailover(ctx context.Context, target string) failoverResult {
	r := failoverResult{Target: target, KillAfter: failoverKillAt}
	fail := func(err error) failoverResult {
		r.Err = err.Error()
		return r
	}
	if _, err := b.cluster.waitHealthy(ctx, 3*time.Minute); err != nil {
		return fail(err)
	}
	p, err := b.startPooler(ctx, target, failoverClients)
	if err != nil {
		return fail(err)
	}
	defer p.stop()
	port, err := b.endpoint(ctx, p)
	if err != nil {
		return fail(err)
	}
	logDir := filepath.Join(b.dir, "logs", "failover-"+target)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fail(err)
	}
	run := pgbenchRun{
		args: []string{"-n", "-M", "simple", "-T", strconv.Itoa(int(failoverDuration.Seconds())),
			"-c", strconv.Itoa(failoverClients), "-j", "2", "--max-tries=" + strconv.Itoa(failoverMaxTries),
			"-l", "--log-prefix=" + filepath.Join(logDir, "tx")},
		port:    port,
		cred:    b.cluster.app,
		logPath: filepath.Join(b.dir, "logs", "pgbench-failover-"+target+".txt"),
		timeout: failoverDuration + failoverGrace,
	}
	cmd, out, err := run.start(ctx)
	if err != nil {
		return fail(err)
	}
	started := time.Now()
	var kill time.Time
	select {
	case <-ctx.Done():
	case <-time.After(failoverKillAt):
		s, err := b.cluster.status(ctx)
		if err == nil {
			if m, ok := primaryOf(s); ok && m.PID > 0 {
				r.KilledMember = m.Name
				kill = time.Now()
				err = syscall.Kill(m.PID, syscall.SIGKILL)
			} else {
				err = fmt.Errorf("no primary to kill")
			}
		}
		if err != nil {
			r.Err = "kill: " + err.Error()
		} else {
			log.Printf("failover %s: killed the postmaster of %s at %.1fs", target, r.KilledMember, kill.Sub(started).Seconds())
		}
	}
	pr := run.wait(ctx, cmd, out)
	killErr := r.Err
	r.pgbenchResult = pr
	if killErr != "" {
		r.Err = strings.TrimPrefix(r.Err+"; "+killErr, "; ")
	}
	r.LogPartial = pr.Hung
	files, _ := filepath.Glob(filepath.Join(logDir, "tx.*"))
	var entries []txEntry
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		e, err := parseTxLog(bufio.NewScanner(fh))
		fh.Close()
		entries = append(entries, e...)
		if err != nil && !pr.Hung {
			// A killed pgbench may leave a torn last line; anything else
			// is worth knowing.
			log.Printf("failover %s: %s: %v", target, f, err)
		}
	}
	if !kill.IsZero() {
		end := started.Add(failoverDuration)
		r.stallStats = analyzeStalls(entries, failoverClients, kill, kill.Add(end.Sub(kill)/2))
	}
	return r
}
