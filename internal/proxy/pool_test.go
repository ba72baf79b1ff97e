package proxy_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/testutil"
)

func txMode(size int) func(*proxy.Config) {
	return func(c *proxy.Config) {
		c.PoolMode, c.PoolSize = proxy.PoolTransaction, size
	}
}

func dsnFor(f *fixture, px *proxy.Server, endpoint string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=5", f.app.User, f.app.Password, px.Addr(endpoint), f.app.Database)
}

// TestTransactionPooling: many clients share a small pool; protocol-level
// prepared statements (pgx names them by their SQL, so clients collide on
// names) keep working whichever server a transaction lands on; a client
// that creates session state is pinned to its server; clients beyond the
// pool wait for a free connection.
func TestTransactionPooling(t *testing.T) {
	f := start(t)
	px := f.newProxy(t, txMode(2))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := dsnFor(f, px, "writer")

	setup, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close(ctx)
	if _, err := setup.Exec(ctx, "CREATE TABLE pooled (client int, n int, PRIMARY KEY (client, n))"); err != nil {
		t.Fatal(err)
	}

	const clients, rounds = 6, 40
	var wg sync.WaitGroup
	pids := sync.Map{}
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			for n := 0; n < rounds; n++ {
				// Each client prepares a statement of its own too (its SQL
				// differs), under pgx's name for it.
				q := fmt.Sprintf("SELECT pg_backend_pid(), $1::int + %d", c)
				var pid, v int
				if err := conn.QueryRow(ctx, q, n).Scan(&pid, &v); err != nil || v != n+c {
					errs <- fmt.Errorf("client %d round %d: %v (v=%d)", c, n, err, v)
					return
				}
				pids.Store(pid, true)
				tx, err := conn.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				if _, err := tx.Exec(ctx, "INSERT INTO pooled VALUES ($1, $2)", c, n); err != nil {
					errs <- fmt.Errorf("client %d insert %d: %v", c, n, err)
					return
				}
				if err := tx.Commit(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var rows int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM pooled").Scan(&rows); err != nil || rows != clients*rounds {
		t.Fatalf("rows = %d, %v", rows, err)
	}
	n := 0
	pids.Range(func(_, _ any) bool { n++; return true })
	if n > 2 {
		t.Fatalf("%d server backends served the clients; pool_size is 2", n)
	}

	// Pinning: SET outside a transaction keeps the client on its server.
	pinned, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close(ctx)
	if _, err := pinned.Exec(ctx, "SET application_name = 'pinned'"); err != nil {
		t.Fatal(err)
	}
	var firstPID int
	for i := 0; i < 5; i++ {
		var pid int
		var app string
		if err := pinned.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('application_name')").Scan(&pid, &app); err != nil {
			t.Fatal(err)
		}
		if app != "pinned" || (firstPID != 0 && pid != firstPID) {
			t.Fatalf("pinned session moved: pid %d (was %d), application_name %q", pid, firstPID, app)
		}
		firstPID = pid
		// Another client's transaction runs meanwhile on the other server.
		if _, err := setup.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	// The other server never sees the pinned client's setting.
	var other string
	if err := setup.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&other); err != nil || other == "pinned" {
		t.Fatalf("session state leaked to another client: %q %v", other, err)
	}

	// With one server pinned and one free, a client holding a transaction
	// makes the next one wait until it commits.
	holder, err := setup.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	waiter, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, "SELECT 1")
		done <- err
	}()
	testutil.Eventually(t, 10*time.Second, "a client waiting for the pool", func() error {
		for _, p := range px.Stats().Pools {
			if p.Waiting > 0 {
				return nil
			}
		}
		return testutil.ErrNotYet
	})
	select {
	case err := <-done:
		t.Fatalf("query ran with no free server connection: %v", err)
	default:
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var (
	pgbenchFailed  = regexp.MustCompile(`number of failed transactions: (\d+)`)
	pgbenchRetried = regexp.MustCompile(`number of transactions retried: (\d+)`)
)

// pgbenchFixture is a cluster with a session-mode proxy (f.px) and a
// transaction-mode one (tx), and pgbench tables initialised through them.
type pgbenchFixture struct {
	f    *fixture
	tx   *proxy.Server
	bin  string
	env  []string
	args func(px *proxy.Server, extra ...string) []string
}

func startPgbench(t *testing.T) pgbenchFixture {
	t.Helper()
	pb := pgbenchFixture{bin: "/usr/lib/postgresql/15/bin/pgbench"}
	if _, err := os.Stat(pb.bin); err != nil {
		t.Skip("pgbench is not installed")
	}
	f := start(t)
	pb.f, pb.tx = f, f.newProxy(t, txMode(8))
	pb.env = append(os.Environ(), "PGPASSWORD="+f.app.Password, "PGSSLMODE=disable")
	pb.args = func(px *proxy.Server, extra ...string) []string {
		host, port, _ := strings.Cut(px.Addr("writer"), ":")
		return append([]string{"-h", host, "-p", port, "-U", f.app.User}, append(extra, f.app.Database)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	init := exec.CommandContext(ctx, pb.bin, pb.args(f.px, "-i", "-q", "-s", "2")...)
	init.Env = pb.env
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	return pb
}

// TestPgbenchSurvivesPrimaryKill: 16 pgbench clients run TPC-B through the
// writer endpoint with --max-tries=10 while the primary's postmaster is
// killed with SIGKILL: no transaction fails, no client aborts or hangs. Run
// in session mode and then in transaction mode.
func TestPgbenchSurvivesPrimaryKill(t *testing.T) {
	pb := startPgbench(t)
	f, tx, pgbench, env, args := pb.f, pb.tx, pb.bin, pb.env, pb.args
	for _, mode := range []struct {
		name string
		px   *proxy.Server
	}{{"session", f.px}, {"transaction", tx}} {
		f.waitAllRunning(t)
		old := f.primary(t)
		run := exec.Command(pgbench, args(mode.px, "-n", "-c", "16", "-j", "2", "-T", "10", "--max-tries=10", "--failures-detailed")...)
		run.Env = env
		var out strings.Builder
		run.Stdout, run.Stderr = &out, &out
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		finished := make(chan error, 1)
		go func() { finished <- run.Wait() }()
		time.Sleep(3 * time.Second) // let the load settle: the fault must hit running transactions
		if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var err error
		select {
		case err = <-finished:
		case <-time.After(60 * time.Second):
			stats := mode.px.Stats()
			var dump strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Logf("goroutines:\n%s", dump.String())
			if ss, err := exec.Command("ss", "-tnpi").CombinedOutput(); err == nil {
				t.Logf("sockets:\n%s", ss)
			}
			f.logActivity(t)
			_ = run.Process.Signal(syscall.SIGKILL)
			<-finished
			t.Fatalf("%s mode: pgbench hung after the primary was killed (proxy stats %+v)\n%s", mode.name, stats, out.String())
		}
		text := out.String()
		failed := pgbenchFailed.FindStringSubmatch(text)
		if err != nil || strings.Contains(text, "aborted") || failed == nil || failed[1] != "0" {
			t.Fatalf("%s mode: pgbench through the proxy failed across the primary kill (%v):\n%s", mode.name, err, text)
		}
		retried := pgbenchRetried.FindStringSubmatch(text)
		t.Logf("%s mode: 0 failed transactions; retried: %v", mode.name, retried)
		f.newPrimaryAfter(t, old)
	}
}

// waitAllRunning waits until every member runs and one replica is
// synchronous, so a
// fault starts from a healthy cluster.
func (f *fixture) waitAllRunning(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 90*time.Second, "all members running", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := admin.Status(ctx, f.sup.Store(), f.cfg)
		if err != nil {
			return err
		}
		syncs := 0
		for _, m := range s.Members {
			if m.State != cluster.StateRunning {
				return fmt.Errorf("%s is %s/%s: %w", m.Name, m.Role, m.State, testutil.ErrNotYet)
			}
			if m.Role == cluster.RoleReplica && m.Sync {
				syncs++
			}
		}
		if syncs == 0 {
			return fmt.Errorf("no synchronous replica yet: %w", testutil.ErrNotYet)
		}
		return nil
	})
}

// logActivity logs what the primary's backends are doing.
func (f *fixture) logActivity(t *testing.T) {
	p := f.primary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, _, err := f.cfg.LoadSecrets()
	if err != nil {
		t.Log(err)
		return
	}
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s:%d/postgres?sslmode=disable", admin.User, admin.Password, p.Host, p.Port))
	if err != nil {
		t.Log(err)
		return
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT pid, state, coalesce(wait_event_type,''), coalesce(wait_event,''), left(query, 60), backend_xid::text FROM pg_stat_activity WHERE datname = 'app'")
	if err != nil {
		t.Log(err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		var state, wt, we, q string
		var xid *string
		_ = rows.Scan(&pid, &state, &wt, &we, &q, &xid)
		t.Logf("backend %d %s %s/%s xid=%v %q", pid, state, wt, we, xid, q)
	}
}

func (f *fixture) newPrimaryAfter(t *testing.T, old admin.MemberStatus) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "a new primary", func() error {
		if p := f.primary(t); p.Name == old.Name {
			return testutil.ErrNotYet
		}
		return nil
	})
}

// TestPgbenchSwitchoverNoErrors: a planned switchover while pgbench runs
// through both pool modes at once costs the clients no error of any kind:
// no retry needed, no aborted client. The proxies hold new transactions,
// drain the ones in flight, acknowledge, and the old primary stops only
// then.
func TestPgbenchSwitchoverNoErrors(t *testing.T) {
	pb := startPgbench(t)
	f, tx, pgbench, env, args := pb.f, pb.tx, pb.bin, pb.env, pb.args
	f.waitAllRunning(t)
	old := f.primary(t)
	type run struct {
		name string
		cmd  *exec.Cmd
		out  strings.Builder
		done chan error
	}
	var runs []*run
	for _, m := range []struct {
		name string
		px   *proxy.Server
	}{{"session", f.px}, {"transaction", tx}} {
		r := &run{name: m.name, done: make(chan error, 1)}
		// No --max-tries: any error at all aborts a client.
		r.cmd = exec.Command(pgbench, args(m.px, "-n", "-c", "8", "-j", "1", "-T", "15")...)
		r.cmd.Env = env
		r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { r.done <- r.cmd.Wait() }()
		runs = append(runs, r)
	}
	time.Sleep(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := admin.Switchover(ctx, f.sup.Store(), f.cfg, "", func(string) {}); err != nil {
		t.Fatalf("switchover: %v", err)
	}
	f.newPrimaryAfter(t, old)
	for _, r := range runs {
		var err error
		select {
		case err = <-r.done:
		case <-time.After(60 * time.Second):
			_ = r.cmd.Process.Signal(syscall.SIGKILL)
			<-r.done
			t.Fatalf("%s mode: pgbench hung across the switchover\n%s", r.name, r.out.String())
		}
		text := r.out.String()
		// pgbench counts serialization failures (40001) as failed
		// transactions without aborting the client: check that line too.
		failed := pgbenchFailed.FindStringSubmatch(text)
		if err != nil || strings.Contains(text, "error") || strings.Contains(text, "aborted") || (failed != nil && failed[1] != "0") {
			t.Errorf("%s mode: clients saw errors across a planned switchover (%v):\n%s", r.name, err, text)
			continue
		}
		t.Logf("%s mode: no error across the switchover", r.name)
	}
}

// TestIdleClientsPark: clients idle outside a transaction are parked (their
// relay goroutine is replaced by a small waiter) and come back to work
// transparently, with or without the server connection they hold in
// session mode; client_idle_timeout still ends idle clients.
func TestIdleClientsPark(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitParked := func(t *testing.T, px *proxy.Server, want int64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for px.Status().Parked["writer"] != want {
			if time.Now().After(deadline) {
				t.Fatalf("parked = %d, want %d", px.Status().Parked["writer"], want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("transaction mode", func(t *testing.T) {
		px := f.newProxy(t, txMode(2))
		const clients = 12
		conns := make([]*pgx.Conn, clients)
		for i := range conns {
			c, err := pgx.Connect(ctx, dsnFor(f, px, "writer"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			conns[i] = c
		}
		for round := 0; round < 3; round++ {
			waitParked(t, px, clients)
			for i, c := range conns {
				var v int
				if err := c.QueryRow(ctx, "SELECT $1::int * 2", i+round).Scan(&v); err != nil || v != 2*(i+round) {
					t.Fatalf("round %d client %d: %v (v=%d)", round, i, err, v)
				}
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		waitParked(t, px, clients)
	})

	t.Run("session mode", func(t *testing.T) {
		px := f.newProxy(t, nil)
		idle, err := pgx.Connect(ctx, dsnFor(f, px, "writer"))
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close(ctx)
		busy, err := pgx.Connect(ctx, dsnFor(f, px, "writer"))
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close(ctx)
		// busy gets a server connection and keeps it (session mode); both
		// park.
		if _, err := busy.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		waitParked(t, px, 2)
		if px.Status().Servers != 1 {
			t.Fatalf("servers lent = %d, want 1", px.Status().Servers)
		}
		var v int
		for _, c := range []*pgx.Conn{idle, busy} {
			if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&v); err != nil || v != 42 {
				t.Fatalf("parked client: %v (v=%d)", err, v)
			}
		}
		// Woken, they park again once idle (a session keeping its server
		// connection used to wait for its next message with no deadline
		// after a park, and never parked again).
		waitParked(t, px, 2)
	})

	for _, timeout := range []time.Duration{100 * time.Millisecond, 1500 * time.Millisecond} {
		t.Run(fmt.Sprintf("client_idle_timeout %s", timeout), func(t *testing.T) {
			px := f.newProxy(t, func(c *proxy.Config) { c.ClientIdleTimeout = timeout })
			c, err := pgx.Connect(ctx, dsnFor(f, px, "writer"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			// Read what the proxy sends on its own: a FATAL 57P05, then
			// the end of the connection.
			raw := c.PgConn().Conn()
			_ = raw.SetReadDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			got, err := io.ReadAll(raw)
			if err != nil {
				t.Fatalf("reading the idle connection: %v (got %q)", err, got)
			}
			if !strings.Contains(string(got), "57P05") {
				t.Fatalf("idle client got %q, want a 57P05 FATAL", got)
			}
			if el := time.Since(start); el < timeout/2 {
				t.Fatalf("ended after %s, before client_idle_timeout %s", el, timeout)
			}
		})
	}
}
