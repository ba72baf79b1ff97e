package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/holdfast/holdfast/internal/cluster"
)

func runEvents(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	asJSON := fs.Bool("json", false, "one JSON object per line")
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	limit := fs.Int("n", 100, "how many past events to print")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	_, st, code := cf.open(stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	evs, err := st.Events(ctx, *limit)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	enc := json.NewEncoder(stdout)
	show := func(e cluster.Event) {
		if *asJSON {
			_ = enc.Encode(e)
			return
		}
		who := e.Member
		if who == "" {
			who = "-"
		}
		fmt.Fprintf(stdout, "%s  %-8s  %-22s %s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), who, e.Kind, e.Message)
	}
	var after int64
	for _, e := range evs {
		show(e)
		after = e.Revision
	}
	if !*follow {
		return exitOK
	}
	if after == 0 {
		snap, err := st.Snapshot(ctx)
		if err != nil {
			return fail(stderr, "%v", err)
		}
		after = snap.Revision
	}
	for e := range st.WatchEvents(ctx, after) {
		show(e)
	}
	return exitOK
}
