package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/supervisor"
)

func runUp(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "directory for all data (default holdfast-data, or data_dir from the config)")
	cfgPath := fs.String("config", "", "config file (YAML); default: built-in demo cluster")
	printCfg := fs.Bool("print-config", false, "print the full effective config, with every field documented, and exit")
	restart := fs.Duration("restart-delay", 5*time.Second, "how long a dead agent stays down before it is restarted (negative: never)")
	quiet := fs.Bool("quiet", false, "do not print the event stream")
	single := fs.Bool("single-region", false, "run the primary region only (no standby region)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: holdfast up [--data-dir DIR] [--config FILE] [--single-region] [--print-config]\n\n"+
			"Runs the whole cluster in the foreground: embedded etcd, and one agent process per member, each\n"+
			"owning a PostgreSQL instance. With no config: cluster demo, primary region home (members\n"+
			"home-a/b/c on ports 15432-15434) and standby region away (away-a/b on 15435-15436; not with\n"+
			"--single-region), etcd on 127.0.0.1:2379. Creates role and database app; credentials are\n"+
			"written to DIR/secrets/app.env and DIR/secrets/admin.env. Ctrl-C stops everything cleanly; running\n"+
			"it again on the same data dir resumes the cluster.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *dataDir != "" {
		os.Setenv("HOLDFAST_DATA_DIR", *dataDir)
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	if *single {
		cfg.PrimaryRegionOnly()
	}
	if cfg.Etcd.Embedded {
		if u, err := url.Parse(cfg.Etcd.ClientURL); err == nil {
			cfg.Etcd.Endpoints = []string{u.Host}
		}
	}
	if *printCfg {
		b, err := cfg.MarshalCommented()
		if err != nil {
			return fail(stderr, "%v", err)
		}
		stdout.Write(b)
		return exitOK
	}
	log := newLogger(stderr)
	supervisor.TuneGC()
	sup, err := supervisor.New(supervisor.Config{Deployment: cfg, Out: stdout, RestartDelay: *restart, QuietEvents: *quiet}, log)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "holdfast %s: starting cluster %q in %s\n", version, cfg.Cluster, cfg.DataDir)
	if err := sup.Open(ctx); err != nil {
		return fail(stderr, "%v", err)
	}
	<-ctx.Done()
	stop()
	fmt.Fprintln(stdout, "\nstopping: pausing automatic failover, stopping the primary, then the replicas...")
	if err := sup.Close(context.Background()); err != nil {
		return fail(stderr, "%v", err)
	}
	fmt.Fprintln(stdout, "stopped.")
	return exitOK
}

func flagExit(err error) int {
	if err == flag.ErrHelp {
		return exitOK
	}
	return exitInvalid
}
