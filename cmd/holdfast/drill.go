package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/drill"
)

func drillUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: holdfast drill run --scenario S --path P [--rate N] [--duration D] [--repeat K] [--json] [--config FILE]\n"+
		"       holdfast drill matrix [--rate N] [--duration D] [--repeat K] [--regions] [--json] [--config FILE]\n"+
		"       holdfast drill chaos [--faults N] [--seed S] [--duration D] [--kinds K,...] [--paths P,...] [--json] [--config FILE]\n\n"+
		"Writes unique ids at a steady rate along a path, injects a fault, waits for recovery (and for the\n"+
		"write buffer to drain), then reconciles what was acknowledged with what the database holds.\n"+
		"Scenarios: %s. Paths: %s\n"+
		"(direct: an application that reconnects to whichever member status calls primary; proxy: the\n"+
		"writer endpoint; buffer: the durable write buffer's ingest). The report gives requests, ok, errors,\n"+
		"unknown outcomes, lost acknowledged writes, duplicates, downtime (longest time without a success),\n"+
		"recovery (fault to the first success of a write sent after it), latency and a timeline.\n"+
		"The matrix runs every scenario on every path; the region-* scenarios only with --regions.\n"+
		"chaos injects N randomized faults back to back, overlapping, on every path at once, and checks\n"+
		"the whole history (see docs/chaos.md); `drill chaos --help` for its flags.\n",
		strings.Join(drill.Scenarios, ", "), strings.Join(drill.Paths, ", "))
}

func runDrill(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "chaos" {
		return runDrillChaos(args[1:], stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "run" && args[0] != "matrix") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			drillUsage(stdout)
			return exitOK
		}
		drillUsage(stderr)
		return exitInvalid
	}
	sub := args[0]
	fs := flag.NewFlagSet("drill "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	scenario := fs.String("scenario", "", "fault to inject: "+strings.Join(drill.Scenarios, ", "))
	path := fs.String("path", "", "how writes reach the database: "+strings.Join(drill.Paths, ", "))
	rate := fs.Float64("rate", 200, "writes per second")
	duration := fs.Duration("duration", 15*time.Second, "length of the load; the fault comes after a third")
	repeat := fs.Int("repeat", 1, "run the drill K times and report min, median and max")
	pause := fs.Duration("pause", 5*time.Second, "pause-primary and partition-primary: how long the primary stays stopped or cut off")
	asJSON := fs.Bool("json", false, "print the report(s) as JSON")
	withRegions := fs.Bool("regions", false, "matrix: include the region-* scenarios (they need a standby region and move the primary region)")
	fs.Usage = func() { drillUsage(stderr); fmt.Fprintf(stderr, "\nFlags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err)
	}
	if *repeat < 1 {
		fmt.Fprintln(stderr, "holdfast drill: --repeat must be at least 1")
		return exitInvalid
	}
	var runs []drill.RunConfig
	if sub == "run" {
		rc := drill.RunConfig{Scenario: *scenario, Path: *path, Rate: *rate, Duration: *duration, PauseFor: *pause}
		if err := rc.Validate(); err != nil {
			fmt.Fprintf(stderr, "holdfast drill run: %v\n", err)
			return exitInvalid
		}
		for range *repeat {
			runs = append(runs, rc)
		}
	} else {
		for _, s := range drill.Scenarios {
			if strings.HasPrefix(s, "region-") && !*withRegions {
				continue
			}
			for _, p := range drill.Paths {
				rc := drill.RunConfig{Scenario: s, Path: p, Rate: *rate, Duration: *duration, PauseFor: *pause}
				if err := rc.Validate(); err != nil {
					fmt.Fprintf(stderr, "holdfast drill matrix: %v\n", err)
					return exitInvalid
				}
				for range *repeat {
					runs = append(runs, rc)
				}
			}
		}
	}
	r, closeRunner, code := drillRunner(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	defer closeRunner()
	r.Progress = func(s string) { fmt.Fprintf(stderr, "drill: %s\n", s) }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var reports []drill.Report
	for i, rc := range runs {
		rep, err := r.Run(ctx, rc)
		if err != nil {
			code := exitFailed
			if errors.Is(err, drill.ErrBusy) || errors.Is(err, drill.ErrUnhealthy) {
				code = exitInvalid
			}
			fmt.Fprintf(stderr, "holdfast drill: %s on %s: %v\n", rc.Scenario, rc.Path, err)
			return code
		}
		if rep.AchievedRate < 0.9*rc.Rate {
			fmt.Fprintf(stderr, "drill: warning: %.0f writes/s requested, %.0f achieved (the machine or the path cannot sustain the rate)\n", rc.Rate, rep.AchievedRate)
		}
		reports = append(reports, rep)
		if i+1 < len(runs) {
			// Let the cluster settle (the old primary rejoins) before the next.
			if err := r.WaitHealthy(ctx, 2*time.Minute); err != nil {
				return fail(stderr, "drill: between drills: %v", err)
			}
		}
	}
	if sub == "matrix" && *repeat > 1 {
		return printMatrixSpread(stdout, reports, *asJSON)
	}
	if *asJSON {
		var out any = reports
		if sub == "run" && len(reports) == 1 {
			out = reports[0]
		} else if sub == "run" {
			out = map[string]any{"runs": reports, "spread": spreads(reports)}
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPATH\tREQUESTS\tOK\tERRORS\tUNKNOWN\tLOST\tDUPLICATES\tDOWNTIME MS\tRECOVERY MS\tP99 MS")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\n", r.Scenario, r.Path, r.Requests, r.OK, r.Errors, r.Unknown,
			r.LostAcked, r.Duplicates, r.DowntimeMS, r.RecoveryMS, r.LatencyMS.P99)
	}
	tw.Flush()
	if sub == "run" && len(reports) > 1 {
		sp := spreads(reports)
		for _, k := range slices.Sorted(maps.Keys(sp)) {
			fmt.Fprintf(stdout, "%-12s min %.0f  median %.0f  max %.0f\n", k, sp[k].Min, sp[k].Median, sp[k].Max)
		}
	}
	return exitOK
}

// drillRunner loads the config, opens the store and reads the admin token:
// what a drill or a chaos run needs.
func drillRunner(cfgPath string, stderr io.Writer) (*drill.Runner, func(), int) {
	cfg, code := loadConfig(cfgPath, stderr)
	if code != exitOK {
		return nil, nil, code
	}
	log := newLogger(stderr)
	st, err := openStore(cfg, log)
	if err != nil {
		return nil, nil, fail(stderr, "%v", err)
	}
	token, _ := api.ReadToken(cfg.API.AdminTokenFile)
	return &drill.Runner{Store: st, Cfg: cfg, Log: log, AdminToken: token}, func() { st.Close() }, exitOK
}

// matrixCell is one scenario on one path, repeated.
type matrixCell struct {
	Scenario string                  `json:"scenario"`
	Path     string                  `json:"path"`
	Runs     []drill.Report          `json:"runs"`
	Spread   map[string]drill.Spread `json:"spread"`
}

// printMatrixSpread prints the matrix with the min, median and max of each
// cell's repeats.
func printMatrixSpread(stdout io.Writer, reports []drill.Report, asJSON bool) int {
	var cells []*matrixCell
	for _, r := range reports {
		if n := len(cells); n == 0 || cells[n-1].Scenario != r.Scenario || cells[n-1].Path != r.Path {
			cells = append(cells, &matrixCell{Scenario: r.Scenario, Path: r.Path})
		}
		c := cells[len(cells)-1]
		c.Runs = append(c.Runs, r)
	}
	for _, c := range cells {
		c.Spread = spreads(c.Runs)
	}
	if asJSON {
		b, _ := json.MarshalIndent(map[string]any{"cells": cells}, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPATH\tRUNS\tDOWNTIME MS (MIN MEDIAN MAX)\tRECOVERY MS (MEDIAN)\tERRORS (MEDIAN)\tUNKNOWN (MEDIAN)\tLOST (MAX)\tDUPLICATES (MAX)")
	for _, c := range cells {
		d := c.Spread["downtime_ms"]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f %.0f %.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\n", c.Scenario, c.Path, len(c.Runs), d.Min, d.Median, d.Max,
			c.Spread["recovery_ms"].Median, c.Spread["errors"].Median, c.Spread["unknown"].Median, c.Spread["lost_acked"].Max, c.Spread["duplicates"].Max)
	}
	tw.Flush()
	return exitOK
}

// spreads gives min, median and max of the main figures over repeats.
func spreads(rs []drill.Report) map[string]drill.Spread {
	get := func(f func(drill.Report) float64) drill.Spread {
		var v []float64
		for _, r := range rs {
			v = append(v, f(r))
		}
		return drill.SpreadOf(v)
	}
	return map[string]drill.Spread{
		"downtime_ms": get(func(r drill.Report) float64 { return float64(r.DowntimeMS) }),
		"recovery_ms": get(func(r drill.Report) float64 { return float64(r.RecoveryMS) }),
		"errors":      get(func(r drill.Report) float64 { return float64(r.Errors) }),
		"unknown":     get(func(r drill.Report) float64 { return float64(r.Unknown) }),
		"lost_acked":  get(func(r drill.Report) float64 { return float64(r.LostAcked) }),
		"duplicates":  get(func(r drill.Report) float64 { return float64(r.Duplicates) }),
	}
}
