package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/internal/chaos"
	"github.com/holdfast/holdfast/internal/drill"
)

func joinFaults(fs []chaos.Fault) string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return strings.Join(out, ", ")
}

func chaosUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: holdfast drill chaos [--faults N] [--seed S] [--duration D] [--kinds K,...] [--paths P,...] [--rate R]\n"+
		"                            [--max-active M] [--min-hold D] [--max-hold D] [--json] [--config FILE]\n\n"+
		"Writes on every path at once while N faults drawn from the seed hit the cluster back to back, a new one\n"+
		"possibly while older ones hold; then heals everything, waits for the cluster's health and the write\n"+
		"buffer's drain, and checks the whole history: every acknowledged write present exactly once, no refused\n"+
		"write applied, no write acknowledged by a primary already replaced. A line per fault; the report gives\n"+
		"each fault's recovery, the counts per path, the violations and the history around the first one.\n"+
		"The same seed and flags replay the same faults.\n\n"+
		"Faults on a loopback cluster: %s.\n"+
		"It refuses a cluster that is not a lab cluster: one `holdfast up` runs on this machine, every member\n"+
		"with a fault link in front of it, on a loopback address, reporting its process ids.\n"+
		"Exit code 0: no violation and health restored; 1: a violation, or the cluster did not recover.\n",
		joinFaults(chaos.LoopbackFaults))
}

func runDrillChaos(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drill chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	faults := fs.Int("faults", 20, "how many faults")
	seed := fs.Uint64("seed", 0, "the plan's seed (0: drawn from the clock, and printed)")
	duration := fs.Duration("duration", 0, "spread the faults over this long (0: --every apart)")
	every := fs.Duration("every", 4*time.Second, "mean gap between two faults (each drawn between half and 1.5 times it)")
	kindList := fs.String("kinds", "", "comma-separated faults to draw from (default: all available)")
	pathList := fs.String("paths", strings.Join(drill.Paths, ","), "comma-separated paths that carry writes: "+strings.Join(drill.Paths, ", "))
	rate := fs.Float64("rate", 100, "writes per second on each path")
	maxActive := fs.Int("max-active", 2, "lasting faults (pauses, partitions) in place at once, at most")
	minHold := fs.Duration("min-hold", 2*time.Second, "shortest a lasting fault holds")
	maxHold := fs.Duration("max-hold", 8*time.Second, "longest a lasting fault holds")
	settle := fs.Duration("settle", 2*time.Minute, "longest wait for the cluster's health after the last heal")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() { chaosUsage(stderr); fmt.Fprintf(stderr, "\nFlags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "holdfast drill chaos: unexpected arguments %q\n", fs.Args())
		return exitInvalid
	}
	kinds := chaos.LoopbackFaults
	if *kindList != "" {
		var err error
		if kinds, err = chaos.ParseFaults(*kindList); err != nil {
			fmt.Fprintf(stderr, "holdfast drill chaos: --kinds: %v\n", err)
			return exitInvalid
		}
	}
	for _, k := range kinds {
		if !slices.Contains(chaos.LoopbackFaults, k) {
			fmt.Fprintf(stderr, "holdfast drill chaos: --kinds: %s is not available yet (available: %s)\n", k, joinFaults(chaos.LoopbackFaults))
			return exitInvalid
		}
	}
	var paths []string
	for _, p := range strings.Split(*pathList, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(drill.Paths, p) {
			fmt.Fprintf(stderr, "holdfast drill chaos: --paths: unknown path %q (paths: %s)\n", p, strings.Join(drill.Paths, ", "))
			return exitInvalid
		}
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "holdfast drill chaos: --paths: none")
		return exitInvalid
	}
	if *rate <= 0 || *rate > 10000 {
		fmt.Fprintf(stderr, "holdfast drill chaos: --rate %v: between 1 and 10000 writes/s\n", *rate)
		return exitInvalid
	}
	if *duration > 0 && *faults > 0 {
		*every = *duration / time.Duration(*faults)
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	plan := chaos.PlanConfig{Seed: *seed, Faults: *faults, Kinds: kinds, Every: *every, MinHold: *minHold, MaxHold: *maxHold, MaxActive: *maxActive}
	if err := plan.Validate(); err != nil {
		fmt.Fprintf(stderr, "holdfast drill chaos: %v\n", err)
		return exitInvalid
	}
	r, closeRunner, code := drillRunner(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	defer closeRunner()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stderr, "chaos: seed %d (replay with --seed %d and the same flags)\n", *seed, *seed)
	rep, err := chaos.Run(ctx, r, chaos.RunConfig{Plan: plan, Paths: paths, Rate: *rate, Settle: *settle,
		Progress: func(s string) { fmt.Fprintf(stderr, "chaos: %s\n", s) }})
	if err != nil {
		return fail(stderr, "holdfast drill chaos: %v", err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		printChaosReport(stdout, rep, paths)
	}
	if !rep.Passed {
		return exitFailed
	}
	return exitOK
}

func printChaosReport(w io.Writer, rep chaos.Report, paths []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tAT\tKIND\tTARGET\tHOLD\tRECOVERY MS\tERROR")
	for _, f := range rep.Faults {
		hold, rec := "-", "-"
		if f.Hold > 0 {
			hold = f.Hold.Round(100 * time.Millisecond).String()
		}
		if f.RecoveryMS >= 0 {
			rec = fmt.Sprint(f.RecoveryMS)
		}
		fmt.Fprintf(tw, "%d\t+%s\t%s\t%s\t%s\t%s\t%s\n", f.N, f.At.Round(100*time.Millisecond), f.Fault, f.Target, hold, rec, f.Error)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tWRITES\tOK\tERRORS\tUNKNOWN (APPLIED)\tLOST\tDUPLICATES\tREFUSED YET APPLIED\tTWO WRITERS")
	for _, p := range paths {
		r := rep.Paths[p]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d (%d)\t%d\t%d\t%d\t%d\n", p, r.Writes, r.OK, r.Errors, r.Unknown, r.UnknownApplied, r.Lost, r.Duplicates, r.ErrorApplied, r.TwoWriters)
	}
	tw.Flush()
	if r := rep.Reads; r != nil {
		fmt.Fprintf(w, "\nreads on the reader endpoint: %d in %d sessions (%d failed) against %d sequence writes; stale beyond %d ms: %d\n",
			r.Reads, r.Sessions, r.Errors, r.SeqWrites, r.BoundMS, r.Stale)
	}
	if rep.HealthRestoredMS >= 0 {
		fmt.Fprintf(w, "\nhealth restored %d ms after the last heal\n", rep.HealthRestoredMS)
	} else {
		fmt.Fprintln(w, "\nhealth NOT restored after the last heal")
	}
	if len(rep.Violations) == 0 {
		fmt.Fprintf(w, "no violation (seed %d)\n", rep.Seed)
		return
	}
	fmt.Fprintf(w, "%d violation(s) (seed %d):\n", len(rep.Violations), rep.Seed)
	for i, v := range rep.Violations {
		if i == 20 {
			fmt.Fprintf(w, "  ... %d more (--json lists them all)\n", len(rep.Violations)-i)
			break
		}
		fmt.Fprintf(w, "  %s\n", v)
	}
	fmt.Fprintf(w, "\nhistory around the first violation:\n%s", rep.History)
}
