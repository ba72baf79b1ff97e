package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/store"
)

func runProxy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: holdfast proxy [--config FILE]\n\n"+
			"Runs the PostgreSQL proxy in the foreground (`holdfast up` runs one itself): the writer endpoint\n"+
			"follows the primary and holds new connections while it changes; the reader endpoint balances over\n"+
			"healthy replicas. Clients log in with SCRAM-SHA-256 against proxy.users_file.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	log := newLogger(stderr)
	st, err := store.Open(store.Config{Cluster: cfg.Cluster, Endpoints: cfg.Etcd.Endpoints,
		DialTimeout: cfg.Etcd.DialTimeout.D(), RequestTimeout: cfg.Etcd.RequestTimeout.D()}, log)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer st.Close()
	svc, err := proxy.Start(cfg, st, log)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	fmt.Fprintf(stdout, "holdfast proxy: writer %s, reader %s\n", svc.Addr("writer"), svc.Addr("reader"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return exitOK + boolExit(svc.Close() != nil)
}

func boolExit(failed bool) int {
	if failed {
		return exitFailed
	}
	return exitOK
}
