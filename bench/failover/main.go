// Command failover measures failover and switchover on a real cluster, the
// way a client sees them, and compares holdfast with peers run in the same
// invocation on the same machine:
//
//	(a) kill -9 of the primary's postmaster -> first successful INSERT on a new primary
//	(b) kill -9 of the primary's manager and postmaster (node loss) -> the same
//	(c) planned switchover -> longest gap between successful INSERTs, and failed INSERTs
//
// Each run starts a fresh cluster, writes continuously (one INSERT every
// millisecond or so, synchronous commit), injects the fault and measures.
// Usage: go run ./bench/failover [-runs 5] [-targets holdfast,patroni] [-json out.json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Target is a clustering system under test.
type Target interface {
	Name() string
	// Start creates a fresh three-member cluster with a table `bench(id
	// bigint primary key)` and returns when it accepts writes.
	Start(ctx context.Context) error
	// DSNs returns one connection string per member.
	DSNs() []string
	// Primary returns the index of the primary and the pids of its
	// postmaster and of its manager process (agent, Patroni, keeper).
	Primary(ctx context.Context) (idx, postmasterPID, managerPID int, err error)
	// Switchover asks for a planned switchover away from the primary.
	Switchover(ctx context.Context) error
	Stop()
}

type scenario string

const (
	killPostmaster scenario = "kill-postmaster"
	nodeLoss       scenario = "node-loss"
	switchover     scenario = "switchover"
)

// Run is one measurement.
type Run struct {
	Target   string        `json:"target"`
	Scenario scenario      `json:"scenario"`
	Downtime time.Duration `json:"downtime_ns"` // (a), (b): fault -> first write on the new primary; (c): longest write gap
	Failed   int           `json:"failed_writes"`
	Lost     int           `json:"lost_writes"` // acknowledged but missing afterwards
	Err      string        `json:"error,omitempty"`
}

func main() {
	runs := flag.Int("runs", 5, "runs per scenario and target")
	targets := flag.String("targets", "holdfast", "comma-separated: holdfast, patroni (defaults: ttl 30, loop_wait 10), patroni-tight (ttl 20, loop_wait 1)")
	scenarios := flag.String("scenarios", "kill-postmaster,node-loss,switchover", "comma-separated scenarios")
	jsonOut := flag.String("json", "", "also write all runs as JSON to this file")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	var all []Run
	for _, tn := range strings.Split(*targets, ",") {
		for _, sc := range strings.Split(*scenarios, ",") {
			for i := 0; i < *runs; i++ {
				t, err := newTarget(tn)
				if err != nil {
					log.Fatal(err)
				}
				r := measure(t, scenario(sc))
				log.Printf("%s %s run %d: %s (failed writes %d, lost %d) %s", tn, sc, i+1, r.Downtime.Round(time.Millisecond), r.Failed, r.Lost, r.Err)
				all = append(all, r)
			}
		}
	}
	report(all)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func newTarget(name string) (Target, error) {
	switch name {
	case "holdfast":
		return &holdfastTarget{}, nil
	case "patroni":
		return newPatroni()
	case "patroni-tight":
		return newPatroniTight()
	}
	return nil, fmt.Errorf("unknown target %q", name)
}

func measure(t Target, sc scenario) Run {
	r := Run{Target: t.Name(), Scenario: sc}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := t.Start(ctx); err != nil {
		r.Err = "start: " + err.Error()
		return r
	}
	defer t.Stop()
	idx, pgPID, mgrPID, err := t.Primary(ctx)
	if err != nil {
		r.Err = "primary: " + err.Error()
		return r
	}
	w := newWriter(t.DSNs(), idx)
	w.start()
	if !w.waitWrites(ctx, 200) {
		w.stop()
		r.Err = "writer never got going"
		return r
	}
	faultAt := time.Now()
	switch sc {
	case killPostmaster:
		err = syscall.Kill(pgPID, syscall.SIGKILL)
	case nodeLoss:
		err = syscall.Kill(mgrPID, syscall.SIGKILL)
		if err == nil {
			err = syscall.Kill(pgPID, syscall.SIGKILL)
		}
	case switchover:
		err = t.Switchover(ctx)
	default:
		err = fmt.Errorf("unknown scenario %q", sc)
	}
	if err != nil {
		w.stop()
		r.Err = string(sc) + ": " + err.Error()
		return r
	}
	first, ok := w.waitWriteElsewhere(ctx, idx, faultAt)
	// Keep writing a little on the new primary, then check.
	w.waitWrites(ctx, 200)
	w.stop()
	if !ok {
		r.Err = "no write succeeded on a new primary"
		return r
	}
	if sc == switchover {
		r.Downtime = w.longestGap(faultAt.Add(-time.Second))
	} else {
		r.Downtime = first.Sub(faultAt)
	}
	r.Failed = w.failedAfter(faultAt)
	lost, err := w.lost(ctx)
	if err != nil {
		r.Err = "verify: " + err.Error()
	}
	r.Lost = lost
	return r
}

func report(all []Run) {
	type key struct {
		target string
		sc     scenario
	}
	groups := map[key][]Run{}
	var keys []key
	for _, r := range all {
		k := key{r.Target, r.Scenario}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	fmt.Printf("\n%-14s %-16s %5s %10s %10s %10s %8s %6s %s\n", "target", "scenario", "runs", "median", "min", "max", "failed", "lost", "errors")
	medians := map[key]time.Duration{}
	for _, k := range keys {
		var ds []time.Duration
		failed, lost, errs := 0, 0, 0
		for _, r := range groups[k] {
			if r.Err != "" {
				errs++
				continue
			}
			ds = append(ds, r.Downtime)
			failed += r.Failed
			lost += r.Lost
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		if len(ds) == 0 {
			fmt.Printf("%-14s %-16s %5d %10s %10s %10s %8s %6s %d\n", k.target, k.sc, 0, "-", "-", "-", "-", "-", errs)
			continue
		}
		med := ds[len(ds)/2]
		medians[k] = med
		fmt.Printf("%-14s %-16s %5d %10s %10s %10s %8.1f %6d %d\n", k.target, k.sc, len(ds), ms(med), ms(ds[0]), ms(ds[len(ds)-1]), float64(failed)/float64(len(ds)), lost, errs)
	}
	for _, k := range keys {
		if k.target == "holdfast" {
			continue
		}
		if hf, ok := medians[key{"holdfast", k.sc}]; ok && hf > 0 {
			if other, ok := medians[k]; ok {
				fmt.Printf("%s: %s median is %.1fx holdfast's\n", k.sc, k.target, float64(other)/float64(hf))
			}
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }
