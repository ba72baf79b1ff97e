package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/holdfast/holdfast/internal/agent"
)

func runAgent(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (required)")
	member := fs.String("member", "", "member to run (required)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: holdfast agent --config FILE --member NAME\n\n"+
			"Runs one member: owns its PostgreSQL, publishes its state in etcd, takes part in elections.\n"+
			"`holdfast up` starts one per member; on several hosts, run it under systemd.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *cfgPath == "" || *member == "" {
		fmt.Fprintln(stderr, "holdfast agent: --config and --member are required")
		return exitInvalid
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	if _, _, ok := cfg.FindMember(*member); !ok {
		fmt.Fprintf(stderr, "holdfast agent: member %q is not in %s (members: %v)\n", *member, *cfgPath, cfg.MemberNames())
		return exitInvalid
	}
	log := newLogger(stderr)
	st, err := openStore(cfg, log)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer st.Close()
	agent.Version = version
	a, err := agent.New(cfg, *member, st, log)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		return fail(stderr, "%v", err)
	}
	return exitOK
}
