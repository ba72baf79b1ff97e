package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/holdfast/holdfast/internal/admin"
)

func runSwitchover(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("switchover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	to := fs.String("to", "", "member to hand the primary role to (default: the healthiest synchronous replica)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: holdfast switchover [--to NAME] [--json]\n\n"+
			"Planned change of primary: the primary stops accepting writes, the target receives all WAL,\n"+
			"takes the leader key and is promoted; the old primary rejoins as a replica. Refused, changing\n"+
			"nothing, if the target is unknown, not a streaming replica, or lags beyond\n"+
			"failover.max_lag_on_switchover.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, st, code := cf.open(stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := admin.Switchover(ctx, st, cfg, *to, progressTo(stderr, *asJSON))
	return report(res, err, *asJSON, stdout, stderr)
}

func runFailover(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	to := fs.String("to", "", "member to promote (default: the eligible member with the most WAL)")
	allowLoss := fs.Bool("allow-data-loss", false, "promote even when too few members answered to be sure no acknowledged commit is missing")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: holdfast failover [--to NAME] [--allow-data-loss] [--json]\n\n"+
			"Manual failover when the primary is gone. Without --allow-data-loss the usual safety rules\n"+
			"apply (only the synchronous set, the most WAL, enough members answering). With a running\n"+
			"primary it does a switchover instead.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, st, code := cf.open(stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := admin.Failover(ctx, st, cfg, *to, *allowLoss, progressTo(stderr, *asJSON))
	return report(res, err, *asJSON, stdout, stderr)
}

func progressTo(w io.Writer, quiet bool) func(string) {
	return func(s string) {
		if !quiet {
			fmt.Fprintln(w, s)
		}
	}
}

func report(res admin.Result, err error, asJSON bool, stdout, stderr io.Writer) int {
	if err != nil {
		if asJSON {
			_ = json.NewEncoder(stdout).Encode(map[string]any{"ok": false, "error": err.Error()})
		}
		return fail(stderr, "%v", err)
	}
	if asJSON {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"ok": true, "from": res.From, "to": res.To, "generation": res.Generation, "took_ms": res.Took.Milliseconds()})
		return exitOK
	}
	fmt.Fprintf(stdout, "done: %s is primary (generation %d) after %s\n", res.To, res.Generation, res.Took.Round(1e6))
	return exitOK
}

func runPause(args []string, stdout, stderr io.Writer) int {
	return setPaused("pause", true, args, stdout, stderr)
}
func runResume(args []string, stdout, stderr io.Writer) int {
	return setPaused("resume", false, args, stdout, stderr)
}

func setPaused(name string, paused bool, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	_, st, code := cf.open(stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	if err := admin.SetPaused(context.Background(), st, paused); err != nil {
		return fail(stderr, "%v", err)
	}
	if paused {
		fmt.Fprintln(stdout, "paused: members keep running; no automatic failover until `holdfast resume`")
	} else {
		fmt.Fprintln(stdout, "resumed: automatic failover enabled")
	}
	return exitOK
}
