package main

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "\nholdfast durable write buffer: %d writers in %d load processes (separate OS processes), %s per phase, %d CPUs\n",
		r.Clients, r.Procs, r.Duration, r.CPUs)
	fmt.Fprintf(w, "servers (NATS with sync always, HTTP, committer) in the benchmark process; PostgreSQL 15 in its own\n\n")

	const row = "%-45s %9s %7s %7s %7s %7s %9s %9s %6s %6s %6s\n"
	fmt.Fprintf(w, row, "", "", "", "", "", "", "", "not", "CPU s:", "", "")
	fmt.Fprintf(w, row, "phase", "writes/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "acked", "acked", "server", "client", "pg")
	for _, p := range []struct {
		name string
		ph   phase
	}{
		{"baseline: JetStream publish, fsync per write", r.Baseline},
		{"ingest: POST /v1/writes, group commit", r.Ingest},
	} {
		f2 := func(v float64) string { return fmt.Sprintf("%.2f", v) }
		f1 := func(v float64) string { return fmt.Sprintf("%.1f", v) }
		fmt.Fprintf(w, row, p.name, fmt.Sprintf("%.0f", math.Floor(p.ph.PerSecond)), f2(p.ph.P50MS), f2(p.ph.P90MS), f2(p.ph.P99MS), f2(p.ph.MaxMS),
			fmt.Sprint(p.ph.Writes), fmt.Sprint(p.ph.Non202+p.ph.Errors), f1(p.ph.ServerCPU), f1(p.ph.ClientCPU), f1(p.ph.PostgresCPU))
	}
	for _, p := range []struct {
		name string
		ph   phase
	}{{"baseline", r.Baseline}, {"ingest", r.Ingest}} {
		if p.ph.FirstError != "" {
			fmt.Fprintf(w, "%s: %d non-202, %d without answer; first: %s\n", p.name, p.ph.Non202, p.ph.Errors, p.ph.FirstError)
		}
		if p.ph.LateStartMS > 100 {
			fmt.Fprintf(w, "%s: a load process started %.0f ms late\n", p.name, p.ph.LateStartMS)
		}
	}
	fmt.Fprintf(w, "\ningest / baseline: %.3fx\n\n", r.Ratio)

	d, v := r.Drain, r.Verify
	fmt.Fprintln(w, "drain into PostgreSQL")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  committed during ingest\t%d (%.0f writes/s)\n", d.CommittedDuringIngest, d.CommitRateIngest)
	perBatch := 0.0
	if d.PendingBatches > 0 {
		perBatch = float64(d.PendingAtEnd) / float64(d.PendingBatches)
	}
	fmt.Fprintf(tw, "  pending at the end of ingest\t%d in %d batches (%.1f writes per batch; oldest %.1f s old)\n",
		d.PendingAtEnd, d.PendingBatches, perBatch, d.OldestPendingSec)
	fmt.Fprintf(tw, "  drained in\t%.2f s: %d committed (%.0f writes/s; CPU s server %.1f, postgres %.1f)\n",
		d.Seconds, d.CommittedInDrain, d.PerSecond, d.ServerCPU, d.PostgresCPU)
	fmt.Fprintf(tw, "  duplicates, transient retries, dead-lettered\t%d, %d, %d\n", d.Duplicates, d.TransientRetries, d.DeadLettered)
	fmt.Fprintf(tw, "  rows in table ingest\t%d for %d acknowledged writes (%d stored, %d applied keys); keys match: %s\n",
		v.Rows, v.Acknowledged, v.Stored, v.AppliedKeys, yesNo(v.KeysMatch))
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\twant\tgot\t")
	for _, c := range r.Targets {
		met := "met"
		if !c.Met {
			met = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Target, c.Value, met)
	}
	tw.Flush()
}
