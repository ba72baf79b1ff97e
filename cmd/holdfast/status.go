package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/store"
)

// clientFlags are the flags of commands that talk to a running cluster.
type clientFlags struct {
	config *string
	etcd   *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		config: fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)"),
		etcd:   fs.String("etcd", "", "etcd endpoints, comma-separated (default: etcd.endpoints from the config)"),
	}
}

func (c clientFlags) open(stderr io.Writer) (config.Config, *store.Store, int) {
	cfg, code := loadConfig(*c.config, stderr)
	if code != exitOK {
		return cfg, nil, code
	}
	if *c.etcd != "" {
		cfg.Etcd.Endpoints = strings.Split(*c.etcd, ",")
	}
	st, err := openStore(cfg, newLogger(io.Discard))
	if err != nil {
		return cfg, nil, fail(stderr, "cannot reach etcd at %v: %v", cfg.Etcd.Endpoints, err)
	}
	return cfg, st, exitOK
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON (stable field names, for scripts)")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, st, code := cf.open(stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := admin.Status(ctx, st, cfg)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return fail(stderr, "%v", err)
		}
		return exitOK
	}
	printStatus(stdout, s)
	return exitOK
}

func printStatus(w io.Writer, s admin.ClusterStatus) {
	flags := ""
	if s.Paused {
		flags = ", PAUSED: no automatic failover"
	}
	primary := s.Primary
	if primary == "" {
		primary = "none"
	}
	fmt.Fprintf(w, "Cluster: %s  primary: %s  generation: %d  sync: %s %v%s\n", s.Cluster, primary, s.Generation, s.SyncMode, s.SyncSet, flags)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tREGION\tZONE\tHOST\tROLE\tSTATE\tTL\tLSN\tLAG\tLAG TIME\tREPLAY LAG\tSYNC\tPID")
	for _, m := range s.Members {
		sync := ""
		if m.Sync {
			sync = "yes"
		}
		pid := "-"
		if m.PID > 0 {
			pid = fmt.Sprint(m.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", m.Name, m.Region, m.Zone, m.Host, m.Port, m.Role, m.State, m.Timeline, m.LSN, m.LagBytes,
			msOrDash(m.HeartbeatLag), msOrDash(m.ReplayLag), sync, pid)
	}
	tw.Flush()
	for _, m := range s.Members {
		if m.PromoteFailed {
			fmt.Fprintf(w, "%s: its promotion failed %d times in a row: it stands in no election for 30 s after the last failure, or until it follows a leader again (docs/RUNBOOK.md)\n", m.Name, cluster.MaxPromoteFailures)
		}
		if m.LastError != "" {
			fmt.Fprintf(w, "%s: %s\n", m.Name, m.LastError)
		}
	}
}

// msOrDash shows milliseconds as a duration, or "-" when unknown.
func msOrDash(ms *int64) string {
	if ms == nil {
		return "-"
	}
	return (time.Duration(*ms) * time.Millisecond).String()
}
