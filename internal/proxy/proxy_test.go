package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/proxy/scram"
	"github.com/holdfast/holdfast/internal/supervisor"
	"github.com/holdfast/holdfast/internal/testutil"
)

type fixture struct {
	cfg config.Config
	sup *supervisor.Supervisor
	app config.Credentials
	px  *proxy.Server
}

func start(t *testing.T) *fixture {
	t.Helper()
	return startWith(t, nil)
}

// startWith starts a cluster and a proxy on it whose configuration mutate
// (if not nil) adjusts.
func startWith(t *testing.T, mutate func(*proxy.Config)) *fixture {
	t.Helper()
	if !testutil.HavePostgres() {
		t.Skip("PostgreSQL 15 is not installed")
	}
	cfg := testutil.ClusterConfig(t, "px")
	cfg.Proxy.Enabled = false // the test runs its own
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sup, err := supervisor.New(supervisor.Config{Deployment: cfg, Binary: testutil.Binary(t), RestartDelay: 3 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sup.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sup.Close(context.Background()) })
	cfg.Resolve()
	_, _, app, err := cfg.EnsureSecrets()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{cfg: cfg, sup: sup, app: app}
	f.px = f.newProxy(t, mutate)
	return f
}

// newProxy opens a proxy (with its own router) on the fixture's cluster;
// mutate (if not nil) adjusts its configuration.
func (f *fixture) newProxy(t *testing.T, mutate func(*proxy.Config)) *proxy.Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := scram.NewVerifier(f.app.Password, 4096)
	if err != nil {
		t.Fatal(err)
	}
	router := proxy.NewRouter(f.sup.Store(), "home", time.Second, log)
	rctx, rcancel := context.WithCancel(context.Background())
	t.Cleanup(rcancel)
	go router.Run(rctx)
	// The router learns the writer from the store asynchronously; a test
	// that connects before it has would wait for a writer, and the
	// counters that tests read (holdfast_proxy_wait_seconds) would depend
	// on scheduling.
	wctx, wcancel := context.WithTimeout(rctx, 30*time.Second)
	defer wcancel()
	if _, err := router.WaitWriter(wctx); err != nil {
		t.Fatalf("router found no writer: %v", err)
	}
	pc := proxy.DefaultConfig()
	pc.WriterAddr, pc.ReaderAddr = "127.0.0.1:0", "127.0.0.1:0"
	if mutate != nil {
		mutate(&pc)
	}
	px, err := proxy.New(pc, router, proxy.StaticUsers{f.app.User: {Verifier: v, ServerPassword: f.app.Password}}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := px.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	return px
}

func (f *fixture) dsn(endpoint, password string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=5", f.app.User, password, f.px.Addr(endpoint), f.app.Database)
}

func TestProxyEndpoints(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	w, err := pgx.Connect(ctx, f.dsn("writer", f.app.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	var inRecovery bool
	if err := w.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || inRecovery {
		t.Fatalf("writer endpoint reached a standby (%v) or failed: %v", inRecovery, err)
	}
	// Extended protocol with parameters, and the simple protocol.
	if _, err := w.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := w.Exec(ctx, "INSERT INTO t VALUES ($1, $2)", i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := w.QueryRow(ctx, "SELECT count(*) FROM t", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 100 {
		t.Fatalf("count = %d, %v", n, err)
	}
	// COPY in and out.
	rows := [][]any{{1000, "a"}, {1001, "b"}}
	if c, err := w.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id", "v"}, pgx.CopyFromRows(rows)); err != nil || c != 2 {
		t.Fatalf("copy from: %d, %v", c, err)
	}
	var out bytesBuffer
	if _, err := w.PgConn().CopyTo(ctx, &out, "COPY t TO STDOUT"); err != nil || out.lines != 102 {
		t.Fatalf("copy to: %d lines, %v", out.lines, err)
	}

	// Cancel reaches the right server backend.
	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = w.Exec(qctx, "SELECT pg_sleep(20)")
	qcancel()
	var pgErr *pgconn.PgError
	if err == nil {
		t.Fatal("pg_sleep(20) finished despite cancel")
	}
	if w.IsClosed() {
		// pgx closes the connection when the context expires mid-query; a
		// fresh one must work and see no lingering sleep.
		w, err = pgx.Connect(ctx, f.dsn("writer", f.app.Password))
		if err != nil {
			t.Fatal(err)
		}
	} else if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Logf("cancel gave %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the canceled query to end on the server", func() error {
		var sleeping int
		if err := w.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(20)%' AND state = 'active'").Scan(&sleeping); err != nil {
			return err
		}
		if sleeping != 0 {
			return testutil.ErrNotYet
		}
		return nil
	})

	// Reader endpoint: a replica.
	r, err := pgx.Connect(ctx, f.dsn("reader", f.app.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if err := r.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("reader endpoint reached the primary (%v) or failed: %v", !inRecovery, err)
	}

	// Wrong password and unknown user are refused the same way.
	for _, dsn := range []string{f.dsn("writer", "wrong"), fmt.Sprintf("postgres://nobody:x@%s/app?sslmode=disable", f.px.Addr("writer"))} {
		_, err = pgx.Connect(ctx, dsn)
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Errorf("bad login: got %v, want 28P01", err)
		}
	}
}

// TestProxyBadInput: malformed startup packets get an ErrorResponse and a
// clean close; the proxy keeps serving.
func TestProxyBadInput(t *testing.T) {
	f := start(t)
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"oversized startup packet", []byte{0, 1, 0x86, 0xa0, 0, 3, 0, 0}},
		{"unknown protocol code", []byte{0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78}},
		{"protocol 2", append([]byte{0, 0, 0, 13, 0, 2, 0, 0}, []byte("user\x00")...)},
		{"no user", []byte{0, 0, 0, 9, 0, 3, 0, 0, 0}},
	} {
		c, err := net.DialTimeout("tcp", f.px.Addr("writer"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(tt.in)
		reply, _ := io.ReadAll(c)
		c.Close()
		if len(reply) == 0 || reply[0] != 'E' {
			t.Errorf("%s: want an ErrorResponse, got %q", tt.name, reply)
		}
	}
	// SSL and GSS encryption requests are declined, then a normal login works.
	c, err := net.DialTimeout("tcp", f.px.Addr("writer"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, req := range [][]byte{{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}, {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}} {
		_, _ = c.Write(req)
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'N' {
			t.Fatalf("request %x: got %q, %v", req, b, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, f.dsn("writer", f.app.Password))
	if err != nil {
		t.Fatalf("the proxy stopped serving after bad input: %v", err)
	}
	conn.Close(ctx)
}

type bytesBuffer struct{ lines int }

func (b *bytesBuffer) Write(p []byte) (int, error) {
	for _, c := range p {
		if c == '\n' {
			b.lines++
		}
	}
	return len(p), nil
}

// TestProxyNewConnectionsWaitForNewPrimary: while the writer changes, new
// connections wait and then reach the new primary instead of failing.
func TestProxyNewConnectionsWaitForNewPrimary(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := admin.Status(ctx, f.sup.Store(), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var old admin.MemberStatus
	for _, m := range s.Members {
		if m.Role == cluster.RolePrimary {
			old = m
		}
	}
	if err := syscall.Kill(old.AgentPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The lease has not expired yet: the proxy must hold this connection
	// until the new primary is elected, not fail it.
	start := time.Now()
	c, err := pgx.Connect(ctx, f.dsn("writer", f.app.Password))
	if err != nil {
		t.Fatalf("connecting during failover failed instead of waiting: %v", err)
	}
	defer c.Close(ctx)
	var inRecovery bool
	var port int
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('port')::int").Scan(&inRecovery, &port); err != nil || inRecovery {
		t.Fatalf("after failover: recovery=%v err=%v", inRecovery, err)
	}
	if port == old.Port {
		t.Fatalf("connected to the old primary's port %d", port)
	}
	t.Logf("connection held for %s during failover, then reached the new primary on port %d", time.Since(start).Round(time.Millisecond), port)
}

func (f *fixture) primary(t *testing.T) admin.MemberStatus {
	t.Helper()
	var p admin.MemberStatus
	testutil.Eventually(t, 30*time.Second, "a primary", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := admin.Status(ctx, f.sup.Store(), f.cfg)
		if err != nil {
			return err
		}
		for _, m := range s.Members {
			if m.Role == cluster.RolePrimary && m.Leader && m.State == cluster.StateRunning {
				p = m
				return nil
			}
		}
		return testutil.ErrNotYet
	})
	return p
}

// TestProxySessionSurvivesFailover: an idle session, prepared statements
// included, moves to the new primary without an error; a session caught
// inside a transaction gets a retryable 40001 and keeps its connection; a
// planned switchover causes no error on an idle session.
func TestProxySessionSurvivesFailover(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	idle, err := pgx.Connect(ctx, f.dsn("writer", f.app.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(ctx)
	inTx, err := pgx.Connect(ctx, f.dsn("writer", f.app.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer inTx.Close(ctx)
	if _, err := idle.Exec(ctx, "CREATE TABLE moves (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	// pgx prepares named statements: they must follow the session.
	if _, err := idle.Exec(ctx, "INSERT INTO moves VALUES ($1)", 1); err != nil {
		t.Fatal(err)
	}
	stateful, err := pgx.Connect(ctx, f.dsn("writer", f.app.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer stateful.Close(ctx)
	if _, err := stateful.Exec(ctx, "SET work_mem = '8MB'"); err != nil {
		t.Fatal(err)
	}
	if _, err := inTx.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := inTx.Exec(ctx, "INSERT INTO moves VALUES (100)"); err != nil {
		t.Fatal(err)
	}

	old := f.primary(t)
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Once the old server processes are gone (their connections closed), the
	// proxy knows the idle session is detached. A statement sent in the
	// instant before that would rightly get 08007: a backend orphaned by the
	// kill could still have committed it locally.
	testutil.Eventually(t, 10*time.Second, "the old primary's processes to exit", func() error {
		if err := syscall.Kill(-old.PID, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return testutil.ErrNotYet
	})
	testutil.Eventually(t, 10*time.Second, "the proxy to detach both sessions", func() error {
		if n := f.px.Stats().Servers; n != 0 {
			return fmt.Errorf("%d server connections still attached", n)
		}
		return nil
	})
	// The idle session's next statements just work, on the new primary.
	if _, err := idle.Exec(ctx, "INSERT INTO moves VALUES ($1)", 2); err != nil {
		t.Fatalf("idle session after failover: %v", err)
	}
	var port int
	if err := idle.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil || port == old.Port {
		t.Fatalf("idle session is on port %d (old primary %d): %v", port, old.Port, err)
	}
	t.Logf("idle session moved to the new primary in %s with no error", time.Since(start).Round(time.Millisecond))

	// A session with server-side state is not moved silently: it is closed
	// with an error saying why.
	_, err = stateful.Exec(ctx, "SELECT current_setting('work_mem')")
	if err == nil || !strings.Contains(err.Error(), "server-side state") {
		t.Fatalf("a session with SET state was moved silently (err %v)", err)
	}

	// The session that was inside a transaction: retryable error, same connection.
	_, err = inTx.Exec(ctx, "INSERT INTO moves VALUES (101)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
		t.Fatalf("statement in a transaction lost with the primary: got %v, want SQLSTATE 40001", err)
	}
	if inTx.IsClosed() {
		t.Fatal("the client lost its connection")
	}
	// As after any error in a transaction block, the client ends it.
	if _, err := inTx.Exec(ctx, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "25P02") {
		t.Fatalf("statement in the failed transaction: got %v, want 25P02", err)
	}
	if _, err := inTx.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatalf("ROLLBACK: %v", err)
	}
	if _, err := inTx.Exec(ctx, "INSERT INTO moves VALUES ($1)", 3); err != nil {
		t.Fatalf("the retry on the same connection failed: %v", err)
	}

	// The new primary reports where its own transaction ids begin (the
	// lookup of a COMMIT lost with its server relies on it): no id it has
	// handed out is below.
	p := f.primary(t)
	snap, err := f.sup.Store().Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := snap.Members[p.Name]
	var xid uint64
	if err := idle.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	if rep.FirstXID == 0 || rep.PGStartedUS == 0 || xid < rep.FirstXID {
		t.Fatalf("new primary %s reports first_xid %d, pg_started_us %d; it just handed out %d", p.Name, rep.FirstXID, rep.PGStartedUS, xid)
	}

	// Planned switchover: not a single error on an idle session.
	var target string
	for _, m := range f.cfg.MemberNames() {
		if m != p.Name {
			target = m
			break
		}
	}
	testutil.Eventually(t, 60*time.Second, "switchover accepted", func() error {
		_, err := admin.Switchover(ctx, f.sup.Store(), f.cfg, target, func(string) {})
		return err
	})
	for i := 10; i < 20; i++ {
		if _, err := idle.Exec(ctx, "INSERT INTO moves VALUES ($1)", i); err != nil {
			t.Fatalf("idle session after switchover: %v", err)
		}
	}
	var n int
	if err := idle.QueryRow(ctx, "SELECT count(*) FROM moves WHERE id < 100").Scan(&n); err != nil || n != 13 {
		t.Fatalf("rows = %d, %v", n, err)
	}
}
