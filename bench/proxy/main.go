// Command proxy benchmarks holdfast's PostgreSQL proxy against PgBouncer and
// against no proxy at all, in one run on one machine:
//
//   - throughput: pgbench select-only (-S) and the default TPC-B-like script
//     at each client count, straight to the primary, through holdfast's
//     proxy in session and in transaction pool mode, and through PgBouncer
//     in both modes with the same pool size;
//   - memory: each pooler's resident memory (VmRSS) holding many idle,
//     authenticated client connections;
//   - failover: pgbench TPC-B through holdfast's writer endpoint (and
//     straight to the primary, for reference) while the primary's
//     postmaster is killed with SIGKILL: the longest stall clients saw.
//
// It starts a three-member holdfast cluster (`holdfast up`, proxy off) in a
// temporary directory, and each pooler only for its own measurements, so
// that one pool at a time holds server connections and each pooler's memory
// is its own process's. Results are printed as markdown tables (and JSON
// with -json). Usage: bench/proxy.sh [flags], which installs PgBouncer and
// PostgreSQL 15 first; run it as root (PostgreSQL and PgBouncer then run as
// the postgres OS user).
//
// `go run ./bench/proxy soak` (bench/proxy-soak.sh) is another mode: a churn
// soak of holdfast's proxy alone (see soak.go).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	duration   time.Duration
	clients    []int
	scripts    []string
	targets    []string
	protocols  []string
	poolSize   int
	scale      int
	idle       int
	failover   bool
	resolve    bool
	json       bool
	keep       bool
	commandArg []string
}

// bench is one run: its directory, its cluster and the settings every
// measurement shares.
type bench struct {
	opts     options
	dir      string
	cluster  *hfCluster
	poolSize int
	seq      int // numbers pooler configs and logs
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "soak" {
		os.Exit(soakMain(os.Args[2:]))
	}
	var o options
	clients := flag.String("clients", "8,64", "comma-separated pgbench client counts")
	scripts := flag.String("scripts", "select-only,tpcb", "comma-separated pgbench scripts: select-only (-S), tpcb (the default TPC-B-like script)")
	targets := flag.String("targets", strings.Join(allTargets, ","), "comma-separated targets: "+strings.Join(allTargets, ", "))
	protocols := flag.String("protocols", "simple", "comma-separated pgbench query protocols (-M): simple, extended, prepared")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "length of each pgbench throughput run (-T)")
	flag.IntVar(&o.poolSize, "pool-size", 64, "server connections per pool (holdfast pool_size, PgBouncer default_pool_size); session mode needs one per client")
	flag.IntVar(&o.scale, "scale", 10, "pgbench scale factor (-s)")
	flag.IntVar(&o.idle, "idle", 10000, "idle client connections for the memory measurement (0: skip it)")
	flag.BoolVar(&o.resolve, "resolve-commits", true, "holdfast proxy.resolve_commits: probe each explicit transaction's id with its COMMIT, to resolve a COMMIT lost in a failover (false: 08007 instead; saves one statement per transaction)")
	flag.BoolVar(&o.failover, "failover", true, "measure the stall clients see when the primary is killed")
	flag.BoolVar(&o.json, "json", false, "also print the results as JSON")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, pgbench output) even when every run succeeded")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	o.commandArg = os.Args[1:]

	var err error
	if o.clients, err = parseInts(*clients); err != nil {
		fatalUsage("-clients: %v", err)
	}
	o.scripts = splitList(*scripts)
	for _, s := range o.scripts {
		if _, ok := scriptArgs[s]; !ok {
			fatalUsage("-scripts: unknown script %q (select-only, tpcb)", s)
		}
	}
	o.targets = splitList(*targets)
	for _, t := range o.targets {
		if !slices.Contains(allTargets, t) {
			fatalUsage("-targets: unknown target %q (%s)", t, strings.Join(allTargets, ", "))
		}
	}
	o.protocols = splitList(*protocols)
	for _, p := range o.protocols {
		if p != "simple" && p != "extended" && p != "prepared" {
			fatalUsage("-protocols: unknown protocol %q (simple, extended, prepared)", p)
		}
	}
	switch {
	case o.duration < time.Second || o.duration%time.Second != 0:
		fatalUsage("-duration %s: whole seconds, at least 1s (pgbench -T)", o.duration)
	case o.poolSize < 1:
		fatalUsage("-pool-size %d: must be positive", o.poolSize)
	case o.scale < 1:
		fatalUsage("-scale %d: must be positive", o.scale)
	case o.idle < 0:
		fatalUsage("-idle %d: must not be negative", o.idle)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second Ctrl-C kills the benchmark at once; its children follow
		// (Pdeathsig).
		stop()
	}()
	os.Exit(run(ctx, o))
}

func fatalUsage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "proxy bench: "+format+"\n", args...)
	os.Exit(2)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}

// scriptArgs are pgbench's arguments for each script.
var scriptArgs = map[string][]string{
	"select-only": {"-S"},
	"tpcb":        nil,
}

// run does the whole benchmark and returns the exit code: 1 when the setup
// failed or a throughput run failed, so that the tables are incomplete.
func run(ctx context.Context, o options) int {
	res := results{Command: "bench/proxy.sh " + strings.Join(o.commandArg, " "), Started: time.Now().UTC(), PoolSize: o.poolSize}
	res.Command = strings.TrimSpace(res.Command)
	if nofile, err := raiseFileLimit(); err != nil {
		log.Printf("raise the open files limit: %v", err)
	} else {
		res.FileLimit = nofile
		if o.idle > 0 && nofile < uint64(o.idle)+500 {
			log.Printf("the open files limit (%d) is too low for %d idle clients: the memory measurement will stop short", nofile, o.idle)
		}
	}
	dir, err := os.MkdirTemp("", "holdfast-proxy-bench-")
	if err != nil {
		log.Print(err)
		return 1
	}
	b := &bench{opts: o, dir: dir, poolSize: o.poolSize}
	keep := o.keep
	defer func() {
		b.cluster.stop()
		if keep {
			log.Printf("logs and pgbench output kept in %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Print(err)
		}
	}()
	// PostgreSQL runs as postgres and must traverse to its data directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		log.Print(err)
		return 1
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		log.Print(err)
		return 1
	}
	if err := b.setup(ctx, &res); err != nil {
		log.Printf("setup: %v", err)
		keep = o.keep || ctx.Err() == nil
		return 1
	}
	code := 0
	if !b.runThroughput(ctx, &res) {
		code, keep = 1, true
	}
	// Incomplete memory or failover results are findings, not harness
	// failures: keep their logs, but do not fail the run.
	if !b.runMemory(ctx, &res) {
		keep = true
	}
	if !b.runFailover(ctx, &res) {
		keep = true
	}
	res.Finished = time.Now().UTC()
	if ctx.Err() != nil {
		res.Note = "interrupted: the results are incomplete"
		code = 1
		// Ctrl-C cleans up everything, unless asked to keep it.
		keep = o.keep
	}
	if keep {
		res.LogDir = dir
	}
	res.writeMarkdown(os.Stdout)
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
	return code
}

// runThroughput runs pgbench for every protocol, script, client count and
// target; false when a run failed.
func (b *bench) runThroughput(ctx context.Context, res *results) bool {
	ok := true
	for _, proto := range b.opts.protocols {
		for _, script := range b.opts.scripts {
			for _, c := range b.opts.clients {
				for _, t := range b.opts.targets {
					r := b.throughput(ctx, proto, script, c, t)
					if ctx.Err() != nil {
						return ok // interrupted: not a result
					}
					ok = ok && r.ok()
					res.Throughput = append(res.Throughput, r)
				}
			}
		}
	}
	return ok
}

// runMemory measures every pooler target with -idle clients; false when
// one could not hold them all.
func (b *bench) runMemory(ctx context.Context, res *results) bool {
	ok := true
	for _, t := range b.opts.targets {
		if t == targetDirect || b.opts.idle == 0 {
			continue
		}
		r := b.measureMemory(ctx, t, b.opts.idle)
		if ctx.Err() != nil {
			return ok
		}
		ok = ok && r.Err == ""
		res.Memory = append(res.Memory, r)
	}
	return ok
}

// runFailover measures the stall through holdfast's writer endpoint in
// each pool mode under test, then straight to the primary for reference;
// false when a run through holdfast failed or hung.
func (b *bench) runFailover(ctx context.Context, res *results) bool {
	ok := true
	if !b.opts.failover {
		return ok
	}
	for _, t := range []string{targetHoldfastTx, targetHoldfastSession, targetDirect} {
		if t != targetDirect && !slices.Contains(b.opts.targets, t) {
			continue
		}
		r := b.measureFailover(ctx, t)
		if ctx.Err() != nil {
			return ok
		}
		log.Printf("failover %s: %s", t, r.summary())
		if t != targetDirect && (r.Err != "" || r.Hung) {
			ok = false
		}
		res.Failover = append(res.Failover, r)
	}
	return ok
}

// setup builds holdfast, starts the cluster and initialises pgbench's tables
// through the primary.
func (b *bench) setup(ctx context.Context, res *results) error {
	bin, err := buildHoldfast(ctx, b.dir)
	if err != nil {
		return err
	}
	maxClients := slices.Max(b.opts.clients)
	res.MaxConnections = max(100, max(maxClients, b.poolSize, failoverClients)+50)
	log.Printf("starting a holdfast cluster in %s", b.dir)
	b.cluster, err = startCluster(ctx, bin, b.dir, res.MaxConnections)
	if err != nil {
		return err
	}
	p, err := b.cluster.waitHealthy(ctx, time.Minute)
	if err != nil {
		return err
	}
	res.Versions = versions(bin)
	px := b.cluster.cfg.Proxy
	res.ProxySettings = fmt.Sprintf("pool_size %d, hold_window %s, resolve_commits %t, server_idle_timeout %s, max_clients raised to fit, the rest at its defaults",
		b.poolSize, px.HoldWindow, b.opts.resolve, px.ServerIdleTimeout)
	log.Printf("pgbench -i -s %d through the primary (%s)", b.opts.scale, p.Name)
	init := pgbenchRun{
		args:    []string{"-i", "-q", "-s", strconv.Itoa(b.opts.scale)},
		port:    p.Port,
		cred:    b.cluster.app,
		logPath: filepath.Join(b.dir, "logs", "pgbench-init.txt"),
		timeout: 15 * time.Minute,
	}
	if r := init.run(ctx); r.ExitCode != 0 || r.Err != "" {
		return fmt.Errorf("pgbench -i failed (exit %d %s): see %s", r.ExitCode, r.Err, init.logPath)
	}
	return nil
}

// throughput starts target's pooler, warms it up with a short unmeasured
// run at the same client count, runs pgbench and stops the pooler.
func (b *bench) throughput(ctx context.Context, proto, script string, clients int, target string) throughputResult {
	r := throughputResult{Protocol: proto, Script: script, Clients: clients, Target: target}
	name := fmt.Sprintf("%s-%s-c%d-%s", proto, script, clients, target)
	p, err := b.startPooler(ctx, target, clients)
	if err != nil {
		r.Err = err.Error()
		if ctx.Err() == nil {
			log.Printf("%s: %v", name, err)
		}
		return r
	}
	defer p.stop()
	port, err := b.endpoint(ctx, p)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	common := []string{"-n", "-M", proto, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(2, clients))}
	warm := pgbenchRun{
		args:    append(append([]string{}, common...), "-S", "-T", strconv.Itoa(int(warmup.Seconds()))),
		port:    port,
		cred:    b.cluster.app,
		logPath: filepath.Join(b.dir, "logs", "pgbench-"+name+"-warmup.txt"),
		timeout: time.Minute,
	}
	if w := warm.run(ctx); !w.ok() && ctx.Err() == nil {
		log.Printf("%s: warm-up failed: %s", name, firstNonEmpty(w.Err, w.FirstProblem, "exit "+strconv.Itoa(w.ExitCode)))
	}
	run := pgbenchRun{
		args:    append(append(append([]string{}, common...), scriptArgs[script]...), "-T", strconv.Itoa(int(b.opts.duration.Seconds()))),
		port:    port,
		cred:    b.cluster.app,
		logPath: filepath.Join(b.dir, "logs", "pgbench-"+name+".txt"),
		timeout: b.opts.duration + 2*time.Minute,
	}
	r.Args = "pgbench " + strings.Join(run.args, " ")
	r.pgbenchResult = run.run(ctx)
	switch {
	case ctx.Err() != nil:
	case r.ok():
		log.Printf("%s: %.0f tps, latency %.3f ms", name, r.TPS, r.LatencyMS)
	default:
		log.Printf("%s: FAILED: exit %d, %d aborted clients, %s (see %s)", name, r.ExitCode, r.Aborted,
			firstNonEmpty(r.Err, r.FirstProblem), run.logPath)
	}
	return r
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
