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
)

func regionUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: holdfast region status [--json]\n"+
		"       holdfast region switchover --to REGION [--json]\n\n"+
		"A deployment has regions; the primary region's leader is the primary, every other region is\n"+
		"a standby region: its standby leader streams from the primary and its other members cascade\n"+
		"from the standby leader. `status` lists the regions with their role, leader and lag.\n"+
		"`switchover` makes REGION the primary region with no data loss: the proxies hold new work,\n"+
		"the primary stops once they have drained, REGION's standby leader replays everything and\n"+
		"promotes, and the old primary region becomes a standby region (the same command with the\n"+
		"old region brings it back). Refused, changing nothing, for an unknown region, the primary\n"+
		"region itself, a region without a streaming standby leader, or one lagging beyond\n"+
		"failover.max_lag_on_switchover.\n")
}

func runRegion(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "status" && args[0] != "switchover") {
		regionUsage(stderr)
		return exitInvalid
	}
	sub := args[0]
	fs := flag.NewFlagSet("region "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	to := fs.String("to", "", "switchover: the region to make primary")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Usage = func() { regionUsage(stderr); fmt.Fprintf(stderr, "\nFlags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 || (sub == "switchover" && *to == "") {
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
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	snap, err := st.Snapshot(sctx)
	if err != nil {
		return fail(stderr, "region status: %v", err)
	}
	regions := admin.BuildRegions(cfg, snap)
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(regions)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tROLE\tLEADER\tRUNNING\tLAG\tREPLAY LAG")
	for _, r := range regions.Regions {
		replay := "-"
		if r.ReplayLagMS != nil {
			replay = (time.Duration(*r.ReplayLagMS) * time.Millisecond).String()
		}
		leader := r.Leader
		if leader == "" {
			leader = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\n", r.Name, r.Role, leader, r.Running, r.Members, r.LagBytes, replay)
	}
	_ = tw.Flush()
	return exitOK
}
