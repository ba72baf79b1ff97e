// Command buffer benchmarks holdfast's durable write buffer in one run on
// this machine, against the targets:
//
//  1. baseline: plain JetStream publishes, one per write, each fsynced
//     before it is acknowledged (the embedded NATS server, sync always, no
//     group commit), from -clients concurrent publishers;
//  2. ingest: -clients concurrent HTTP clients posting ingest writes to
//     the buffer's POST /v1/writes, each answered 202 once its batch is
//     fsynced in JetStream, while the committer drains into PostgreSQL;
//  3. drain: how fast the committer commits the backlog left at the end of
//     the ingest phase, and a check that table ingest holds exactly the
//     acknowledged writes.
//
// The servers (NATS, the HTTP server, the committer) run in this process
// and PostgreSQL in its own; the load runs in -procs separate OS processes
// (this program run again with -role), so that the clients' CPU is not
// hidden in the server's. Run it with bench/buffer.sh from the repository
// root, which installs PostgreSQL 15 if needed.
package main

import (
	"github.com/holdfast/holdfast/internal/supervisor"

	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	duration     time.Duration
	clients      int
	procs        int
	asJSON       bool
	keep         bool
	dir          string
	drainTimeout time.Duration
	cpuprofile   string

	// Load processes only.
	role, target string
	start        int64
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "length of each load phase (the baseline, then the ingest)")
	flag.IntVar(&o.clients, "clients", 64, "concurrent writers: HTTP clients for the ingest, JetStream publishers for the baseline\n(each with its own connection)")
	flag.IntVar(&o.procs, "procs", 2, "load processes the writers are spread over (separate OS processes)")
	flag.BoolVar(&o.asJSON, "json", false, "print the report as JSON on stdout (progress still goes to stderr)")
	flag.StringVar(&o.dir, "dir", os.TempDir(), "where to create the run's temporary directory (PostgreSQL and NATS data);\nit must be on a real disk: on tmpfs, fsync costs nothing")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data and the PostgreSQL log) instead of removing it")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Minute, "give up if the committer has not committed the backlog within this time")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the server process during the ingest phase to this file")
	flag.StringVar(&o.role, "role", "", "internal: run as a load process (http or jetstream)")
	flag.StringVar(&o.target, "target", "", "internal: what a load process writes to (URL)")
	flag.Int64Var(&o.start, "start", 0, "internal: when a load process starts (Unix nanoseconds)")
	flag.Usage = func() {
		w := flag.CommandLine.Output()
		fmt.Fprint(w, `Usage: bench/buffer.sh [flags]   (or: go run ./bench/buffer [flags], as root)

Benchmarks holdfast's durable write buffer in one run, with PostgreSQL 15
started in a temporary directory:

  baseline  -clients publishers, each publishing one JetStream message per
            write, fsynced before it is acknowledged (no group commit);
  ingest    -clients HTTP clients posting ingest writes to POST /v1/writes,
            each acknowledged (202) once stored in JetStream, while the
            committer applies them to PostgreSQL;
  drain     the committer commits what is left; then table ingest must hold
            exactly the acknowledged writes.

It reports acknowledged writes/s, p50/p99 acknowledgement latency, the ratio
of ingest to baseline and the drain rate, and checks the targets: >= 20000
acknowledged writes/s, p99 <= 10 ms, >= 4x the baseline. The load runs in
-procs separate processes; the servers (NATS, HTTP, committer) in this one.
The exit status is 1 if a write was refused or lost, not if a target is
missed.

Flags:
`)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "buffer bench: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if o.clients < 1 || o.procs < 1 || o.procs > o.clients || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "buffer bench: -clients and -procs must be at least 1, -procs at most -clients, -duration positive")
		os.Exit(2)
	}
	switch o.role {
	case roleHTTP, roleJetStream:
		os.Exit(runLoad(o))
	case "":
	default:
		fmt.Fprintf(os.Stderr, "buffer bench: unknown -role %q\n", o.role)
		os.Exit(2)
	}
	// The servers (both phases' NATS, the buffer) run with the garbage
	// collector settings of holdfast up; the load processes keep Go's.
	supervisor.TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, o)
	if ctx.Err() != nil {
		logf("interrupted")
		code = 130
	}
	stop()
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s buffer bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
