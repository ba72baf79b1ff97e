package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/wait"
)

// The churn soak (issue 17): clients come and go through one holdfast
// proxy in every way they do in real life while its resources are sampled,
// to show that nothing grows: connect/disconnect storms (Terminate, FIN,
// RST, half-close, leaving during the login), clients killed during a
// query, pipelining clients that close at once, and server backends
// terminated from the server side (pg_terminate_backend) under parked
// clients that then go on. Every -interval it samples, through the proxy's
// own admin endpoint and /proc: the SELECT 1 round trip through the proxy,
// the proxy's goroutines, open file descriptors, resident memory and CPU.
// At the end it compares the last samples with the first ones after the
// warm-up, stops the load, and checks that the proxy, with every client
// gone, holds no client, no goroutine serving one, and is idle.
//
// Usage: bench/proxy-soak.sh [-duration 1h] [flags], or
// `go run ./bench/proxy soak -h`.

type soakOptions struct {
	duration, warmup, interval time.Duration
	poolMode                   string
	poolSize                   int
	idle                       int
	storm                      int
	pause                      time.Duration
	keep                       bool
	commandArg                 []string
}

func soakMain(args []string) int {
	var o soakOptions
	fs := flag.NewFlagSet("soak", flag.ExitOnError)
	fs.DurationVar(&o.duration, "duration", time.Hour, "how long the load runs")
	fs.DurationVar(&o.warmup, "warmup", time.Minute, "samples before this are not compared (at most a third of -duration)")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "sampling interval")
	fs.StringVar(&o.poolMode, "pool-mode", "session", "proxy.pool_mode: session or transaction")
	fs.IntVar(&o.poolSize, "pool-size", 40, "proxy.pool_size")
	fs.IntVar(&o.idle, "idle", 20, "long-lived idle (parked) clients whose server backends are terminated from the server side")
	fs.IntVar(&o.storm, "storm", 2, "connect/disconnect workers")
	fs.DurationVar(&o.pause, "pause", 50*time.Millisecond, "pause of each storm worker between connections")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs) even when the soak passed")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./bench/proxy soak [flags] (bench/proxy-soak.sh [flags])\n\nA churn soak of holdfast's proxy: clients connect and leave in every way while its latency, goroutines, file descriptors and memory are sampled.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(args)
	o.commandArg = args
	switch {
	case o.duration < time.Minute:
		fatalUsage("soak -duration %s: at least 1m", o.duration)
	case o.interval < time.Second:
		fatalUsage("soak -interval %s: at least 1s", o.interval)
	case o.poolMode != "session" && o.poolMode != "transaction":
		fatalUsage("soak -pool-mode %q: session or transaction", o.poolMode)
	case o.idle < 1 || o.storm < 1:
		fatalUsage("soak -idle and -storm must be positive")
	case o.poolMode == "session" && o.idle+10 > o.poolSize:
		fatalUsage("soak: in session mode each idle client keeps a server connection: -pool-size %d must exceed -idle %d by 10", o.poolSize, o.idle)
	}
	o.warmup = min(o.warmup, o.duration/3)
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runSoak(ctx, o)
}

// soak is one run.
type soak struct {
	o     soakOptions
	b     *bench
	p     *pooler
	dsn   string // through the proxy, as the app role
	super string // straight to the primary, as the superuser
	// open counts the client connections the soak holds, logged in.
	open     atomic.Int64
	patterns []*pattern
	samples  []soakSample
	quiesced quiesceResult
}

// pattern is one way of coming and going, and how it went.
type pattern struct {
	name           string
	runs, failures atomic.Int64
	mu             sync.Mutex
	firstErr       string
}

func (p *pattern) done(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // the load is stopping: not a result
	}
	p.runs.Add(1)
	if err != nil {
		p.failures.Add(1)
		p.mu.Lock()
		if p.firstErr == "" {
			p.firstErr = err.Error()
		}
		p.mu.Unlock()
	}
}

func (s *soak) pattern(name string) *pattern {
	p := &pattern{name: name}
	s.patterns = append(s.patterns, p)
	return p
}

// soakSample is what one sampling saw.
type soakSample struct {
	At              time.Duration // since the load started
	LatencyMS       float64       // median of 5 SELECT 1 round trips through the proxy
	Goroutines      float64       // go_goroutines of the proxy process
	ProxyGoroutines float64       // holdfast_proxy_goroutines: serving clients
	Clients, Parked float64       // writer endpoint
	Open            int64         // client connections the soak held
	FDs             int
	RSSKiB          int64
	CPUPercent      float64 // of one core, over the interval
	Ended           float64 // client connections ended so far
}

func runSoak(ctx context.Context, o soakOptions) int {
	if _, err := raiseFileLimit(); err != nil {
		log.Printf("raise the open files limit: %v", err)
	}
	dir, err := os.MkdirTemp("", "holdfast-proxy-soak-")
	if err != nil {
		log.Print(err)
		return 1
	}
	s := &soak{o: o, b: &bench{opts: options{resolve: true}, dir: dir, poolSize: o.poolSize}}
	keep := o.keep
	defer func() {
		s.p.stop()
		s.b.cluster.stop()
		if keep {
			log.Printf("logs kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	if err := s.setup(ctx); err != nil {
		log.Printf("setup: %v", err)
		keep = true
		return 1
	}
	started := time.Now()
	ok := s.run(ctx)
	if ctx.Err() != nil {
		log.Print("interrupted")
		return 1
	}
	ok = s.report(os.Stdout, started) && ok
	if !ok {
		keep = true
	}
	return map[bool]int{true: 0, false: 1}[ok]
}

// setup starts a single-region cluster (no api, no buffer: only what the
// proxy needs) and a `holdfast proxy` on it.
func (s *soak) setup(ctx context.Context) error {
	dir := s.b.dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	bin, err := buildHoldfast(ctx, dir)
	if err != nil {
		return err
	}
	// Three pools (idle clients, the latency probe, everything else) and
	// the backends of killed clients, still sleeping.
	cfg, err := clusterConfig(dir, 3*s.o.poolSize+100)
	if err != nil {
		return err
	}
	cfg.PrimaryRegionOnly()
	cfg.API.Enabled, cfg.Buffer.Enabled = false, false
	for i := range cfg.Regions[0].Members {
		if cfg.Regions[0].Members[i].AdvertisePort, err = freePort(); err != nil {
			return err
		}
	}
	log.Printf("starting a holdfast cluster in %s", dir)
	if s.b.cluster, err = startClusterWith(ctx, bin, dir, cfg); err != nil {
		return err
	}
	target := targetHoldfastSession
	if s.o.poolMode == "transaction" {
		target = targetHoldfastTx
	}
	if s.p, err = s.b.startPooler(ctx, target, 5000); err != nil {
		return err
	}
	app, admin := s.b.cluster.app, s.b.cluster.admin
	s.dsn = dsn("127.0.0.1", s.p.port, app.User, app.Password, app.Database)
	primary, err := s.b.endpoint(ctx, nil)
	if err != nil {
		return err
	}
	s.super = dsn("127.0.0.1", primary, admin.User, admin.Password, "postgres")
	log.Printf("holdfast proxy (%s mode, pool_size %d) on port %d, pid %d, admin port %d", s.o.poolMode, s.o.poolSize, s.p.port, s.p.proc.pid(), s.p.admin)
	return nil
}

// connect logs a client in through the proxy (application_name names the
// soak's role for it: pools and pg_terminate_backend tell them apart).
func (s *soak) connect(ctx context.Context, app string) (*pgconn.PgConn, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(cctx, s.dsn+" application_name="+app)
	if err != nil {
		return nil, err
	}
	s.open.Add(1)
	return c, nil
}

func query(ctx context.Context, c *pgconn.PgConn, sql string) error {
	qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	_, err := c.Exec(qctx, sql).ReadAll()
	return err
}

// hijack takes an idle client's socket over.
func hijack(c *pgconn.PgConn) (net.Conn, error) {
	hc, err := c.Hijack()
	if err != nil {
		return nil, err
	}
	return hc.Conn, nil
}

// resetConn closes with a RST instead of a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func rawQuery(sql string) []byte {
	b := []byte{'Q', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(sql)+1))
	return append(append(b, sql...), 0)
}

// parkTime is long enough for the proxy to park an idle client (250 ms).
const parkTime = 400 * time.Millisecond

// run drives the load for -duration, sampling every -interval, then stops
// it and closes every client. False when a pattern failed.
func (s *soak) run(ctx context.Context) bool {
	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	probe, err := s.connect(ctx, "soak-probe")
	if err != nil {
		log.Printf("latency probe: %v", err)
		return false
	}
	defer probe.Close(context.Background())
	baseFDs := countFDs(s.p.proc.pid())
	idle, err := s.openIdle(ctx)
	if err != nil {
		log.Printf("idle clients: %v", err)
		return false
	}
	var wg sync.WaitGroup
	start := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	storm := s.stormPatterns()
	for w := 0; w < s.o.storm; w++ {
		start(func() {
			for i := w; load.Err() == nil; i++ {
				p := storm[i%len(storm)]
				p.pat.done(load, p.run(load))
				if !wait.Sleep(load, s.o.pause) {
					return
				}
			}
		})
	}
	killed := s.pattern("killed during a query (RST while pg_sleep runs)")
	start(func() {
		for load.Err() == nil {
			killed.done(load, s.killDuringQuery(load))
			if !wait.Sleep(load, 500*time.Millisecond) {
				return
			}
		}
	})
	pipelined := s.pattern("pipelined queries, then FIN or RST")
	start(func() {
		for i := 0; load.Err() == nil; i++ {
			pipelined.done(load, s.pipelineAndClose(load, i%2 == 0))
			if !wait.Sleep(load, 300*time.Millisecond) {
				return
			}
		}
	})
	terminated := s.pattern("idle clients' backends terminated (pg_terminate_backend), clients go on")
	replaced := s.pattern("idle client leaves while parked (FIN), another comes")
	start(func() {
		for load.Err() == nil {
			if !wait.Sleep(load, 5*time.Second) {
				return
			}
			terminated.done(load, s.terminateIdle(load, idle))
			replaced.done(load, s.replaceIdle(load, idle))
		}
	})

	log.Printf("load running for %s; a sample every %s", s.o.duration, s.o.interval)
	began := time.Now()
	prevCPU, prevAt := procCPU(s.p.proc.pid()), time.Now()
	tick := time.NewTicker(s.o.interval)
	for time.Since(began) < s.o.duration {
		select {
		case <-ctx.Done():
			tick.Stop()
			stopLoad()
			wg.Wait()
			return false
		case <-tick.C:
		}
		cpu, at := procCPU(s.p.proc.pid()), time.Now()
		smp := s.sample(ctx, probe)
		smp.At = time.Since(began).Round(time.Second)
		smp.CPUPercent = 100 * (cpu - prevCPU).Seconds() / at.Sub(prevAt).Seconds()
		prevCPU, prevAt = cpu, at
		s.samples = append(s.samples, smp)
		log.Printf("%6s  latency %.3f ms  goroutines %.0f (serving clients %.0f)  clients %.0f (parked %.0f, soak holds %d)  fds %d  rss %.1f MiB  cpu %.0f%%",
			smp.At, smp.LatencyMS, smp.Goroutines, smp.ProxyGoroutines, smp.Clients, smp.Parked, smp.Open, smp.FDs, float64(smp.RSSKiB)/mib, smp.CPUPercent)
	}
	tick.Stop()
	stopLoad()
	wg.Wait()
	for _, c := range idle.conns {
		if c != nil {
			_ = c.Close(context.Background())
			s.open.Add(-1)
		}
	}
	_ = probe.Close(context.Background())
	s.open.Add(-1)
	s.quiesced = s.quiesce(ctx, baseFDs)
	for _, p := range s.patterns {
		if p.failures.Load() > 0 {
			return false
		}
	}
	return true
}

// idleClients are the long-lived clients: parked, and moved to a new
// backend when theirs is terminated.
type idleClients struct {
	mu    sync.Mutex
	conns []*pgconn.PgConn
}

func (s *soak) openIdle(ctx context.Context) (*idleClients, error) {
	ic := &idleClients{}
	for i := 0; i < s.o.idle; i++ {
		c, err := s.connect(ctx, "soak-idle")
		if err != nil {
			return nil, err
		}
		if err := query(ctx, c, "SELECT 1"); err != nil {
			return nil, err
		}
		ic.conns = append(ic.conns, c)
	}
	return ic, nil
}

// terminateIdle terminates the server backends of the idle clients (in
// session mode each parked one holds its own; in transaction mode they are
// the pool's idle ones), waits until they are gone, then has every idle
// client run a statement: each must work, on a new backend.
func (s *soak) terminateIdle(ctx context.Context, ic *idleClients) error {
	su, err := pgconn.Connect(ctx, s.super)
	if err != nil {
		return fmt.Errorf("superuser connection: %w", err)
	}
	defer su.Close(context.Background())
	// Materialized, so that the filter runs first: the planner may
	// otherwise call pg_terminate_backend on every backend.
	res, err := su.Exec(ctx, "WITH idle AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = 'soak-idle' AND state = 'idle') SELECT pid FROM idle WHERE pg_terminate_backend(pid)").ReadAll()
	if err != nil {
		return fmt.Errorf("pg_terminate_backend: %w", err)
	}
	var pids []string
	for _, row := range res[0].Rows {
		pids = append(pids, string(row[0]))
	}
	if len(pids) > 0 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := su.Exec(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid IN ("+strings.Join(pids, ",")+")").ReadAll()
			if err != nil {
				return err
			}
			if string(r[0].Rows[0][0]) == "0" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("terminated backends still there after 10s")
			}
			if !wait.Sleep(ctx, 20*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for i, c := range ic.conns {
		if err := query(ctx, c, "SELECT 1"); err != nil {
			return fmt.Errorf("idle client %d after %d backends were terminated: %w", i, len(pids), err)
		}
	}
	return nil
}

// replaceIdle: one idle client leaves while parked (its socket closed, no
// Terminate), a new one comes.
func (s *soak) replaceIdle(ctx context.Context, ic *idleClients) error {
	if !wait.Sleep(ctx, parkTime) {
		return ctx.Err()
	}
	ic.mu.Lock()
	defer ic.mu.Unlock()
	i := rand.IntN(len(ic.conns))
	if raw, err := hijack(ic.conns[i]); err == nil {
		_ = raw.Close()
	} else {
		_ = ic.conns[i].Close(context.Background())
	}
	ic.conns[i] = nil
	s.open.Add(-1)
	c, err := s.connect(ctx, "soak-idle")
	if err != nil {
		return err
	}
	ic.conns[i] = c
	return query(ctx, c, "SELECT 1")
}

type stormPattern struct {
	pat *pattern
	run func(ctx context.Context) error
}

// stormPatterns are the ways the storm workers come and go, in turn.
func (s *soak) stormPatterns() []stormPattern {
	connectQuery := func(ctx context.Context) (*pgconn.PgConn, error) {
		c, err := s.connect(ctx, "soak-storm")
		if err != nil {
			return nil, err
		}
		if err := query(ctx, c, "SELECT 1"); err != nil {
			_ = c.Close(context.Background())
			s.open.Add(-1)
			return nil, err
		}
		return c, nil
	}
	leave := func(c *pgconn.PgConn, how func(net.Conn) error) error {
		defer s.open.Add(-1)
		raw, err := hijack(c)
		if err != nil {
			_ = c.Close(context.Background())
			return err
		}
		return how(raw)
	}
	fin := func(raw net.Conn) error { return raw.Close() }
	rst := func(raw net.Conn) error { resetConn(raw); return nil }
	return []stormPattern{
		{s.pattern("connect, query, Terminate"), func(ctx context.Context) error {
			c, err := connectQuery(ctx)
			if err != nil {
				return err
			}
			defer s.open.Add(-1)
			return c.Close(ctx)
		}},
		{s.pattern("connect, query, parked, FIN"), func(ctx context.Context) error {
			c, err := connectQuery(ctx)
			if err != nil {
				return err
			}
			wait.Sleep(ctx, parkTime)
			return leave(c, fin)
		}},
		{s.pattern("connect, RST"), func(ctx context.Context) error {
			c, err := s.connect(ctx, "soak-storm")
			if err != nil {
				return err
			}
			return leave(c, rst)
		}},
		{s.pattern("connect, query, parked, half-close (the proxy must close)"), func(ctx context.Context) error {
			c, err := connectQuery(ctx)
			if err != nil {
				return err
			}
			wait.Sleep(ctx, parkTime)
			return leave(c, func(raw net.Conn) error {
				defer raw.Close()
				if err := raw.(*net.TCPConn).CloseWrite(); err != nil {
					return err
				}
				_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadAll(raw); err != nil {
					return fmt.Errorf("the proxy did not close a half-closed client: %w", err)
				}
				return nil
			})
		}},
		{s.pattern("FIN during the login"), func(ctx context.Context) error {
			return s.leaveDuringLogin(ctx)
		}},
		{s.pattern("connect, query, parked, RST"), func(ctx context.Context) error {
			c, err := connectQuery(ctx)
			if err != nil {
				return err
			}
			wait.Sleep(ctx, parkTime)
			return leave(c, rst)
		}},
	}
}

// leaveDuringLogin sends a startup packet, reads the authentication
// request and closes.
func (s *soak) leaveDuringLogin(ctx context.Context) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", s.p.port))
	if err != nil {
		return err
	}
	defer c.Close()
	app := s.b.cluster.app
	params := "user\x00" + app.User + "\x00database\x00" + app.Database + "\x00\x00"
	pkt := make([]byte, 8, 8+len(params))
	binary.BigEndian.PutUint32(pkt, uint32(8+len(params)))
	binary.BigEndian.PutUint32(pkt[4:], 3<<16)
	if _, err := c.Write(append(pkt, params...)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 'R' {
		return fmt.Errorf("startup: want an authentication request, got %q, %v", hdr, err)
	}
	return nil
}

// killDuringQuery starts a 3 s query and resets the connection while it
// runs (its backend ends when the query does).
func (s *soak) killDuringQuery(ctx context.Context) error {
	c, err := s.connect(ctx, "soak-storm")
	if err != nil {
		return err
	}
	defer s.open.Add(-1)
	raw, err := hijack(c)
	if err != nil {
		_ = c.Close(context.Background())
		return err
	}
	if _, err := raw.Write(rawQuery("SELECT pg_sleep(3)")); err != nil {
		resetConn(raw)
		return err
	}
	wait.Sleep(ctx, time.Duration(100+rand.IntN(200))*time.Millisecond)
	resetConn(raw)
	return nil
}

// pipelineAndClose sends three queries in one write and closes at once.
func (s *soak) pipelineAndClose(ctx context.Context, fin bool) error {
	c, err := s.connect(ctx, "soak-storm")
	if err != nil {
		return err
	}
	defer s.open.Add(-1)
	raw, err := hijack(c)
	if err != nil {
		_ = c.Close(context.Background())
		return err
	}
	b := append(append(rawQuery("SELECT 1"), rawQuery("SELECT pg_sleep(0.05)")...), rawQuery("SELECT 2")...)
	_, err = raw.Write(b)
	if fin {
		_ = raw.Close()
	} else {
		resetConn(raw)
	}
	return err
}

// sample reads the proxy's state.
func (s *soak) sample(ctx context.Context, probe *pgconn.PgConn) soakSample {
	var smp soakSample
	var rtts []float64
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		if err := query(ctx, probe, "SELECT 1"); err != nil {
			log.Printf("latency probe: %v", err)
			continue
		}
		rtts = append(rtts, float64(time.Since(t0))/msPerNs)
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		smp.LatencyMS = rtts[len(rtts)/2]
	}
	pid := s.p.proc.pid()
	smp.FDs = countFDs(pid)
	smp.RSSKiB, _, _ = rssKiB(pid)
	smp.Open = s.open.Load()
	m, err := scrapeProm(s.p.admin)
	if err != nil {
		log.Printf("scrape: %v", err)
		return smp
	}
	smp.Goroutines = m.sum("go_goroutines")
	smp.ProxyGoroutines = m.sum("holdfast_proxy_goroutines")
	smp.Clients = m.sum("holdfast_proxy_client_connections", "endpoint", "writer")
	smp.Parked = m.sum("holdfast_proxy_client_connections_parked", "endpoint", "writer")
	smp.Ended = m.sum("holdfast_proxy_client_connections_ended_total")
	return smp
}

// quiesceResult is the proxy after the load, with every client gone.
type quiesceResult struct {
	Settled      time.Duration // until it held no client
	Err          string
	Clients      float64
	Parked       float64
	Goroutines   float64 // serving clients: 0
	Lent         float64 // server connections lent
	IdleServers  float64 // pooled, idle (closed after server_idle_timeout)
	FDs, BaseFDs int
	IdleCPU      float64 // % of a core over 10 s
	Accepted     float64
	Ended        map[string]float64
}

// quiesce waits until the proxy holds no client, then measures it idle.
func (s *soak) quiesce(ctx context.Context, baseFDs int) quiesceResult {
	r := quiesceResult{BaseFDs: baseFDs, Ended: map[string]float64{}}
	t0 := time.Now()
	var m promSamples
	for {
		var err error
		if m, err = scrapeProm(s.p.admin); err == nil {
			r.Clients = m.sum("holdfast_proxy_client_connections")
			r.Parked = m.sum("holdfast_proxy_client_connections_parked")
			r.Goroutines = m.sum("holdfast_proxy_goroutines")
			r.Lent = m.sum("holdfast_proxy_server_connections", "state", "active")
			if r.Clients == 0 && r.Parked == 0 && r.Goroutines == 0 && r.Lent == 0 {
				break
			}
		}
		if time.Since(t0) > time.Minute {
			r.Err = fmt.Sprintf("after 1m with no client: %v clients, %v parked, %v goroutines serving clients, %v server connections lent (scrape: %v)", r.Clients, r.Parked, r.Goroutines, r.Lent, err)
			return r
		}
		if !wait.Sleep(ctx, 100*time.Millisecond) {
			r.Err = "interrupted"
			return r
		}
	}
	r.Settled = time.Since(t0)
	r.IdleServers = m.sum("holdfast_proxy_server_connections", "state", "idle")
	r.Accepted = m.sum("holdfast_proxy_client_connections_total")
	for _, smp := range m {
		if smp.name == "holdfast_proxy_client_connections_ended_total" {
			r.Ended[smp.labels["cause"]] += smp.value
		}
	}
	pid := s.p.proc.pid()
	cpu0, at0 := procCPU(pid), time.Now()
	wait.Sleep(ctx, 10*time.Second) // the measurement window
	r.IdleCPU = 100 * (procCPU(pid) - cpu0).Seconds() / time.Since(at0).Seconds()
	r.FDs = countFDs(pid)
	return r
}

// Flatness: the median of the last three samples against the median of the
// first three after the warm-up.
type flatCheck struct {
	name        string
	first, last float64
	unit        string
	ok          bool
}

func median3(v []float64) float64 {
	c := slices.Clone(v)
	slices.Sort(c)
	return c[len(c)/2]
}

func (s *soak) flatness() []flatCheck {
	var after []soakSample
	for _, smp := range s.samples {
		if smp.At >= s.o.warmup {
			after = append(after, smp)
		}
	}
	if len(after) < 6 {
		return nil
	}
	series := func(f func(soakSample) float64) (first, last float64) {
		var a, b []float64
		for _, smp := range after[:3] {
			a = append(a, f(smp))
		}
		for _, smp := range after[len(after)-3:] {
			b = append(b, f(smp))
		}
		return median3(a), median3(b)
	}
	var out []flatCheck
	add := func(name, unit string, f func(soakSample) float64, ok func(first, last float64) bool) {
		first, last := series(f)
		out = append(out, flatCheck{name: name, first: first, last: last, unit: unit, ok: ok(first, last)})
	}
	add("SELECT 1 round trip", "ms", func(x soakSample) float64 { return x.LatencyMS },
		func(a, b float64) bool { return b <= max(1.5*a, a+0.5) })
	add("goroutines (go_goroutines)", "", func(x soakSample) float64 { return x.Goroutines },
		func(a, b float64) bool { return b <= 1.2*a+20 })
	add("open file descriptors", "", func(x soakSample) float64 { return float64(x.FDs) },
		func(a, b float64) bool { return b <= 1.2*a+20 })
	add("resident memory", "MiB", func(x soakSample) float64 { return float64(x.RSSKiB) / mib },
		func(a, b float64) bool { return b <= 1.2*a+16 })
	return out
}

// report prints the run as markdown; false when something grew or the
// proxy did not come back to idle.
func (s *soak) report(w io.Writer, started time.Time) bool {
	ok := true
	fmt.Fprintf(w, "\n## Proxy churn soak\n\n")
	fmt.Fprintf(w, "- command: `bench/proxy-soak.sh %s`\n", strings.Join(s.o.commandArg, " "))
	fmt.Fprintf(w, "- run: %s, load for %s (warm-up %s), a sample every %s\n", started.UTC().Format("2006-01-02 15:04 UTC"), s.o.duration, s.o.warmup, s.o.interval)
	fmt.Fprintf(w, "- holdfast proxy: pool_mode %s, pool_size %d; %d idle clients, %d storm workers pausing %s\n\n", s.o.poolMode, s.o.poolSize, s.o.idle, s.o.storm, s.o.pause)

	fmt.Fprintf(w, "| pattern | runs | failures | first failure |\n|---|---:|---:|---|\n")
	for _, p := range s.patterns {
		fmt.Fprintf(w, "| %s | %d | %d | %s |\n", p.name, p.runs.Load(), p.failures.Load(), p.firstErr)
		if p.failures.Load() > 0 {
			ok = false
		}
	}

	fmt.Fprintf(w, "\n| time | SELECT 1 | goroutines | serving clients | clients (parked) | soak holds | fds | RSS | CPU | ended |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range s.samples {
		fmt.Fprintf(w, "| %s | %.3f ms | %.0f | %.0f | %.0f (%.0f) | %d | %d | %.1f MiB | %.0f %% | %.0f |\n",
			x.At, x.LatencyMS, x.Goroutines, x.ProxyGoroutines, x.Clients, x.Parked, x.Open, x.FDs, float64(x.RSSKiB)/mib, x.CPUPercent, x.Ended)
	}

	fmt.Fprintf(w, "\nFlat (median of the last three samples against the first three after the warm-up):\n\n| metric | first | last | verdict |\n|---|---:|---:|---|\n")
	checks := s.flatness()
	if checks == nil {
		fmt.Fprintf(w, "| (too few samples after the warm-up to judge) | | | |\n")
	}
	for _, c := range checks {
		verdict := "flat"
		if !c.ok {
			verdict, ok = "**GROWING**", false
		}
		fmt.Fprintf(w, "| %s | %.3g %s | %.3g %s | %s |\n", c.name, c.first, c.unit, c.last, c.unit, verdict)
	}

	q := s.quiesced
	fmt.Fprintf(w, "\nAfter the load, every client gone:\n\n")
	if q.Err != "" {
		fmt.Fprintf(w, "- **not idle: %s**\n", q.Err)
		return false
	}
	fmt.Fprintf(w, "- no client, parked client, goroutine serving a client or lent server connection %s after the last client left\n", q.Settled.Round(time.Millisecond))
	fdOK := q.FDs <= q.BaseFDs+int(q.IdleServers)+5
	cpuOK := q.IdleCPU <= 5
	ended := 0.0
	var causes []string
	for c, n := range q.Ended {
		ended += n
		if n > 0 {
			causes = append(causes, fmt.Sprintf("%s %.0f", c, n))
		}
	}
	slices.Sort(causes)
	fmt.Fprintf(w, "- file descriptors %d, before the load %d, pooled idle server connections %.0f: %s\n", q.FDs, q.BaseFDs, q.IdleServers, map[bool]string{true: "ok", false: "**LEAKED**"}[fdOK])
	fmt.Fprintf(w, "- CPU idle: %.1f %% of a core over 10 s: %s\n", q.IdleCPU, map[bool]string{true: "ok (<= 5 %)", false: "**BUSY** (> 5 %)"}[cpuOK])
	fmt.Fprintf(w, "- client connections accepted %.0f, ended %.0f (%s)\n", q.Accepted, ended, strings.Join(causes, ", "))
	if q.Accepted != ended {
		fmt.Fprintf(w, "- **accepted and ended differ with no client connected**\n")
		ok = false
	}
	return ok && fdOK && cpuOK
}

// countFDs counts pid's open file descriptors.
func countFDs(pid int) int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(fds)
}

// procCPU is the CPU time pid has used (user and system), from
// /proc/PID/stat in clock ticks (100 per second on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: state is the
	// first, utime the 12th and stime the 13th.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// promSample is one line of the Prometheus text exposition.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

type promSamples []promSample

// sum adds the samples of name whose labels include want (name, value
// pairs).
func (m promSamples) sum(name string, want ...string) float64 {
	total := 0.0
next:
	for _, x := range m {
		if x.name != name {
			continue
		}
		for i := 0; i+1 < len(want); i += 2 {
			if x.labels[want[i]] != want[i+1] {
				continue next
			}
		}
		total += x.value
	}
	return total
}

// scrapeProm reads the proxy's /metrics.
func scrapeProm(port int) (promSamples, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return parseProm(resp.Body)
}

func parseProm(r io.Reader) (promSamples, error) {
	var out promSamples
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		x := promSample{name: line[:i], labels: map[string]string{}, value: v}
		if j := strings.IndexByte(line[:i], '{'); j >= 0 {
			x.name = line[:j]
			for _, kv := range strings.Split(strings.Trim(line[j:i], "{}"), ",") {
				k, val, ok := strings.Cut(kv, "=")
				if ok {
					x.labels[k] = strings.Trim(val, `"`)
				}
			}
		}
		out = append(out, x)
	}
	return out, sc.Err()
}
