package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/region"
)

func regionUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: holdfast region status [--json]\n"+
		"         (every region's role, leader, lag, canary, health and the member furthest behind; a region is\n"+
		"         unhealthy while a member is down, on another timeline than the primary, or more than 5s behind)\n"+
		"       holdfast region switchover --to REGION [--json]\n"+
		"       holdfast region failover --to REGION [--allow-data-loss] [--force] [--json]\n\n"+
		"A deployment has regions; the primary region's leader is the primary, every other region is\n"+
		"a standby region: its standby leader streams from the primary and its other members cascade\n"+
		"from the standby leader. `status` lists the regions with their role, leader and lag.\n"+
		"`switchover` makes REGION the primary region with no data loss: the proxies hold new work,\n"+
		"the primary stops once they have drained, REGION's standby leader replays everything and\n"+
		"promotes, and the old primary region becomes a standby region (the same command with the\n"+
		"old region brings it back). Refused, changing nothing, for an unknown region, the primary\n"+
		"region itself, a region without a streaming standby leader, or one lagging beyond\n"+
		"failover.max_lag_on_switchover.\n"+
		"`failover` is for when the primary region is lost: REGION's standby leader is promoted and\n"+
		"the data-loss window (the old primary's last known WAL position against what was replayed)\n"+
		"is reported. Refused while the old primary region still holds its leader lease (--force\n"+
		"overrides: writes the old primary accepts until its lease runs out are lost) and when data\n"+
		"may be lost (--allow-data-loss overrides). The old region's members rejoin as standbys.\n")
}

func runRegion(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "status" && args[0] != "switchover" && args[0] != "failover") {
		regionUsage(stderr)
		return exitInvalid
	}
	sub := args[0]
	fs := flag.NewFlagSet("region "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	to := fs.String("to", "", "switchover: the region to make primary")
	asJSON := fs.Bool("json", false, "print JSON")
	allowLoss := fs.Bool("allow-data-loss", false, "failover: promote even if writes acknowledged in the old primary region may be missing")
	force := fs.Bool("force", false, "failover: do not wait for the old primary region's leader lease to expire")
	fs.Usage = func() { regionUsage(stderr); fmt.Fprintf(stderr, "\nFlags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 || (sub != "status" && *to == "") {
		fs.Usage()
		return exitInvalid
	}
	cfg, st, code := cf.open(stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if sub == "switchover" {
		res, err := admin.RegionSwitchover(ctx, st, cfg, *to, progressTo(stderr, *asJSON))
		return report(res, err, *asJSON, stdout, stderr)
	}
	if sub == "failover" {
		maxLoss := admin.NoDataLoss
		if *allowLoss {
			maxLoss = admin.AnyDataLoss
		}
		res, loss, err := admin.RegionFailover(ctx, st, cfg, *to, maxLoss, *force, progressTo(stderr, *asJSON))
		if err != nil || !*asJSON {
			code := report(res, err, *asJSON, stdout, stderr)
			if err == nil && loss.Known {
				fmt.Fprintf(stdout, "data-loss window: %d bytes (old primary at %s, replayed %s)\n", loss.WindowBytes, loss.LastPrimaryLSN, loss.ReplayedLSN)
			} else if err == nil {
				fmt.Fprintln(stdout, "data-loss window: unknown (no report of the old primary survived)")
			}
			return code
		}
		_ = json.NewEncoder(stdout).Encode(map[string]any{"ok": true, "from": res.From, "to": res.To, "generation": res.Generation,
			"took_ms": res.Took.Milliseconds(), "data_loss": loss})
		return exitOK
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	regions, err := admin.ReadRegions(sctx, st, cfg)
	if err != nil {
		return fail(stderr, "region status: %v", err)
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(regions)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tROLE\tLEADER\tRUNNING\tLAG\tLAG TIME\tREPLAY LAG\tCANARY\tHEALTH\tWORST MEMBER")
	for _, r := range regions.Regions {
		replay := msOrDash(r.ReplayLagMS)
		lagTime := "-"
		if r.LagSeconds != nil {
			lagTime = time.Duration(*r.LagSeconds * float64(time.Second)).Round(time.Millisecond).String()
		}
		leader := r.Leader
		if leader == "" {
			leader = "(none)"
		}
		canary := "-"
		var cs region.State
		if r.Canary != nil && json.Unmarshal(r.Canary, &cs) == nil && cs.Active {
			canary = fmt.Sprintf("%d failures", cs.ConsecutiveFailures)
			if cs.Waiting != "" {
				canary += " (" + cs.Waiting + ")"
			}
		}
		health := "healthy"
		if !r.Healthy {
			health = fmt.Sprintf("UNHEALTHY (%d)", len(r.Problems))
		}
		worst := "-"
		for _, m := range r.MemberDetail {
			if m.Name == r.Worst {
				worst = fmt.Sprintf("%s tl %d", m.Name, m.Timeline)
				if m.LagSeconds != nil {
					worst += fmt.Sprintf(" lag %s", time.Duration(*m.LagSeconds*float64(time.Second)).Round(time.Millisecond))
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Role, leader, r.Running, r.Members, r.LagBytes, lagTime, replay, canary, health, worst)
	}
	_ = tw.Flush()
	for _, r := range regions.Regions {
		for _, p := range r.Problems {
			fmt.Fprintf(stdout, "%s: %s\n", r.Name, p)
		}
	}
	return exitOK
}
