package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/testutil"
)

// Client disconnect patterns (issue 17). A session must end exactly once
// whichever way its client goes, while relaying or parked, release its
// server connection, and leave nothing running: before the fix, a parked
// session whose client had closed its socket re-parked in a tight loop, for
// ever, and kept counting as a connected, parked client.

// churnTarget is one proxy under test and what the test did to it.
type churnTarget struct {
	name string
	px   *proxy.Server
	// keep are the clients that stay connected (idle) to the end.
	keep []*pgconn.PgConn
	// sockets: client connections the test holds open now, logged in.
	sockets int64
	// closed: connections the test ended; want: how many of them end
	// with each cause that is certain; eofOrReset: those that end as
	// client_eof or client_reset, depending on which side of the proxy
	// sees the client go first.
	closed     int64
	want       map[string]int64
	eofOrReset int64
	broken     error // the first settle that failed: later ones are skipped
}

// pollUntil calls cond every 20 ms until it returns nil or timeout passes;
// it returns cond's last error.
func pollUntil(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxyGoroutines counts the goroutines running code of package proxy (a
// frame of it on their stack): the proxies' own (accept loops, janitors,
// routers...) and any that outlived a client. The process's other
// goroutines (embedded etcd and NATS, the cluster's links) come and go with
// the cluster's own life, a failover say.
func proxyGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	var ours []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "holdfast/internal/proxy.") {
			count++
			ours = append(ours, g)
		}
	}
	return count, strings.Join(ours, "\n\n")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleCPU is the CPU time the process uses in a 10 s window.
func idleCPU() time.Duration {
	start := cpuTime()
	time.Sleep(10 * time.Second) // the measurement window, not a wait for anything
	return cpuTime() - start
}

// status checks what the proxy reports (GET /status, what `holdfast proxy
// status --json` prints) against the sockets the test holds: every one of
// them idle, so parked, and nothing else.
func (ct *churnTarget) status(t *testing.T) error {
	st, _ := getStatus(t, ct.px.AdminAddr())
	ended := int64(0)
	for _, n := range st.Ended["writer"] {
		ended += n
	}
	switch {
	case st.Clients["writer"] != ct.sockets:
		return fmt.Errorf("%d client connections, %d sockets open", st.Clients["writer"], ct.sockets)
	case st.Parked["writer"] != ct.sockets:
		return fmt.Errorf("%d parked clients, %d sockets open (all idle)", st.Parked["writer"], ct.sockets)
	case st.Goroutines != st.Clients["writer"]+st.Servers:
		return fmt.Errorf("%d goroutines serving %d clients and %d server connections", st.Goroutines, st.Clients["writer"], st.Servers)
	case ended != ct.closed:
		return fmt.Errorf("%d connections ended (%v), %d closed", ended, st.Ended["writer"], ct.closed)
	}
	return nil
}

// settle waits until the proxy agrees with the sockets (see status).
func (ct *churnTarget) settle(t *testing.T, pattern string) {
	t.Helper()
	if ct.broken != nil {
		return
	}
	if err := pollUntil(15*time.Second, func() error { return ct.status(t) }); err != nil {
		ct.broken = err
		t.Errorf("%s proxy, %s: %v", ct.name, pattern, err)
	}
}

func (ct *churnTarget) connect(t *testing.T, f *fixture) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, dsnFor(f, ct.px, "writer"))
	if err != nil {
		t.Fatalf("%s proxy: connect: %v", ct.name, err)
	}
	ct.sockets++
	return c
}

func exec1(t *testing.T, c *pgconn.PgConn, sql string) [][][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return res[len(res)-1].Rows
}

// waitParked waits until every logged-in client of the proxy is parked:
// the disconnect then hits a parked session.
func (ct *churnTarget) waitParked(t *testing.T, pattern string) {
	t.Helper()
	if ct.broken != nil {
		return
	}
	if err := pollUntil(15*time.Second, func() error {
		if n := ct.px.Stats().Parked["writer"]; n != ct.sockets {
			return fmt.Errorf("%d parked, want %d", n, ct.sockets)
		}
		return nil
	}); err != nil {
		ct.broken = err
		t.Errorf("%s proxy, %s: %v", ct.name, pattern, err)
	}
}

// hijack takes the client's socket over, logged in and idle.
func hijack(t *testing.T, c *pgconn.PgConn) net.Conn {
	t.Helper()
	hc, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	return hc.Conn
}

// reset closes a TCP connection with a RST instead of a FIN.
func reset(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
}

// waitClosedByProxy reads from c until the proxy closes it.
func waitClosedByProxy(t *testing.T, c net.Conn, what string) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("%s: the proxy did not close the connection: %v (read %q)", what, err, got)
	}
	return got
}

func rawMessage(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

func rawQuery(sql string) []byte { return rawMessage('Q', sql+"\x00") }

var rawTerminate = []byte{'X', 0, 0, 0, 4}

// rawLogin opens a TCP connection, sends a startup packet and reads the
// proxy's first authentication request: the client is inside the login.
func rawLogin(t *testing.T, f *fixture, px *proxy.Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", px.Addr("writer"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	params := "user\x00" + f.app.User + "\x00database\x00" + f.app.Database + "\x00\x00"
	pkt := make([]byte, 8, 8+len(params))
	binary.BigEndian.PutUint32(pkt, uint32(8+len(params)))
	binary.BigEndian.PutUint32(pkt[4:], 3<<16)
	if _, err := c.Write(append(pkt, params...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 'R' {
		t.Fatalf("startup: want an authentication request, got %q, %v", hdr, err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// waitBackendGone waits until server backend pid has exited.
func waitBackendGone(t *testing.T, su *pgx.Conn, pid string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "backend "+pid+" to exit", func() error {
		var n int
		if err := su.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid).Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			return testutil.ErrNotYet
		}
		return nil
	})
}

// superuser connects to the current primary directly, as the superuser.
func (f *fixture) superuser(t *testing.T) *pgx.Conn {
	t.Helper()
	p := f.primary(t)
	admin, _, err := f.cfg.LoadSecrets()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s:%d/postgres?sslmode=disable", admin.User, admin.Password, p.Host, p.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestClientDisconnectsEndSessions reproduces, through a session-mode, a
// transaction-mode and a client_idle_timeout proxy, every way a client
// leaves or loses its server: closing its socket (FIN) or resetting it
// (RST) while parked, a half-close (shutdown(SHUT_WR)), Terminate while
// parked, right after a query and during the login, leaving during the
// login, being killed during a query, closing after pipelined queries, its
// server backend terminated (pg_terminate_backend) while parked, with the
// client staying or leaving after, and a fast shutdown of the primary
// under parked sessions. After each, the proxy must count exactly the
// sockets that are open as clients, all parked, with one goroutine per
// client and per lent server connection, and count each ended connection
// once, by its cause. Then, with the remaining clients parked, the process
// must use at most 5 % of a core more than before any client came (10 s
// windows; the spin used more than a whole core), and once they leave too,
// the goroutines running the proxies' code are back to their baseline.
func TestClientDisconnectsEndSessions(t *testing.T) {
	f := start(t)
	withAdmin := func(more func(*proxy.Config)) func(*proxy.Config) {
		return func(c *proxy.Config) {
			c.AdminAddr = "127.0.0.1:0"
			if more != nil {
				more(c)
			}
		}
	}
	targets := []*churnTarget{
		{name: "session", px: f.newProxy(t, withAdmin(nil))},
		{name: "transaction", px: f.newProxy(t, withAdmin(txMode(4)))},
		// client_idle_timeout on (but far off) arms a different deadline
		// while parked.
		{name: "idle-timeout", px: f.newProxy(t, withAdmin(func(c *proxy.Config) { c.ClientIdleTimeout = time.Hour }))},
	}
	for _, ct := range targets {
		ct.want = map[string]int64{}
		// Warm up: a pool and the greeting exist before the baseline.
		c := ct.connect(t, f)
		exec1(t, c, "SELECT 1")
		if err := c.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		ct.sockets--
		ct.closed++
		ct.want["terminate"]++
		ct.settle(t, "warm-up")
	}
	if t.Failed() {
		t.FailNow()
	}
	baseGoroutines, _ := proxyGoroutines()
	baseAll := runtime.NumGoroutine()
	baseCPU := idleCPU()
	t.Logf("baseline: %d goroutines in package proxy (%d in all), %v CPU in 10 s idle", baseGoroutines, baseAll, baseCPU)
	su := f.superuser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Each pattern leaves the clients it does not close idle (parked).
	patterns := []struct {
		name string
		run  func(t *testing.T, ct *churnTarget)
	}{
		{"FIN while parked, after a query", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			exec1(t, c, "SELECT 1")
			ct.waitParked(t, "FIN while parked")
			_ = hijack(t, c).Close()
			ct.sockets--
			ct.closed++
			ct.want["client_eof"]++
		}},
		{"FIN while parked, never queried", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			ct.waitParked(t, "FIN while parked, never queried")
			_ = hijack(t, c).Close()
			ct.sockets--
			ct.closed++
			ct.want["client_eof"]++
		}},
		{"RST while parked", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			exec1(t, c, "SELECT 1")
			ct.waitParked(t, "RST while parked")
			reset(t, hijack(t, c))
			ct.sockets--
			ct.closed++
			ct.want["client_reset"]++
		}},
		{"half-close while parked", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			exec1(t, c, "SELECT 1")
			ct.waitParked(t, "half-close")
			raw := hijack(t, c)
			if err := raw.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			// The client can still read: the proxy must end the session
			// and close its side.
			waitClosedByProxy(t, raw, "half-close")
			_ = raw.Close()
			ct.sockets--
			ct.closed++
			ct.want["client_eof"]++
		}},
		{"Terminate while parked", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			exec1(t, c, "SELECT 1")
			ct.waitParked(t, "Terminate while parked")
			_ = c.Close(ctx) // Terminate, then close
			ct.sockets--
			ct.closed++
			ct.want["terminate"]++
		}},
		{"Terminate right after a query", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			raw := hijack(t, c)
			if _, err := raw.Write(append(rawQuery("SELECT 1"), rawTerminate...)); err != nil {
				t.Fatal(err)
			}
			waitClosedByProxy(t, raw, "Terminate after a query")
			_ = raw.Close()
			ct.sockets--
			ct.closed++
			ct.want["terminate"]++
		}},
		{"Terminate during the login", func(t *testing.T, ct *churnTarget) {
			raw := rawLogin(t, f, ct.px)
			if _, err := raw.Write(rawTerminate); err != nil {
				t.Fatal(err)
			}
			// PostgreSQL answers a Terminate instead of a password with a
			// protocol violation (FATAL), and so does the proxy.
			got := waitClosedByProxy(t, raw, "Terminate during the login")
			if !strings.Contains(string(got), "08P01") {
				t.Errorf("Terminate during the login: got %q, want a FATAL 08P01", got)
			}
			_ = raw.Close()
			ct.closed++
			ct.want["login_failed"]++
		}},
		{"FIN during the login", func(t *testing.T, ct *churnTarget) {
			_ = rawLogin(t, f, ct.px).Close()
			ct.closed++
			ct.want["client_eof"]++
		}},
		{"killed during a query", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			raw := hijack(t, c)
			marker := "SELECT pg_sleep(3) -- killed " + ct.name
			if _, err := raw.Write(rawQuery(marker)); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 20*time.Second, "the query to run", func() error {
				var n int
				if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'", marker).Scan(&n); err != nil {
					return err
				}
				if n != 1 {
					return testutil.ErrNotYet
				}
				return nil
			})
			reset(t, raw)
			ct.sockets--
			ct.closed++
			ct.want["client_reset"]++
			// The server connection is not lent any more: the proxy
			// closed it (it was busy), and its backend ends once its
			// query does.
			testutil.Eventually(t, 30*time.Second, "the killed client's backend to end", func() error {
				var n int
				if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1", marker).Scan(&n); err != nil {
					return err
				}
				if n != 0 {
					return testutil.ErrNotYet
				}
				return nil
			})
		}},
		{"pipelined queries, then FIN", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			raw := hijack(t, c)
			var b []byte
			for _, q := range []string{"SELECT 1", "SELECT pg_sleep(0.2)", "SELECT 2"} {
				b = append(b, rawQuery(q)...)
			}
			if _, err := raw.Write(b); err != nil {
				t.Fatal(err)
			}
			_ = raw.Close()
			ct.sockets--
			ct.closed++
			ct.eofOrReset++
		}},
		{"backend terminated while parked, client stays", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			pid := string(exec1(t, c, "SELECT pg_backend_pid()")[0][0])
			ct.waitParked(t, "backend terminated while parked")
			before := ct.px.Stats().Servers
			if _, err := su.Exec(ctx, "SELECT pg_terminate_backend("+pid+")"); err != nil {
				t.Fatal(err)
			}
			// (A statement sent before the backend is gone would be
			// lost with it: 08007.)
			waitBackendGone(t, su, pid)
			if ct.name != "transaction" {
				// Session mode: the parked session held it.
				testutil.Eventually(t, 10*time.Second, "the proxy to drop the terminated backend", func() error {
					if n := ct.px.Stats().Servers; n != before-1 {
						return fmt.Errorf("%d server connections lent, want %d", n, before-1)
					}
					return nil
				})
			}
			// The client moves to another backend without an error.
			if got := string(exec1(t, c, "SELECT pg_backend_pid()")[0][0]); got == pid {
				t.Errorf("%s proxy: still on terminated backend %s", ct.name, pid)
			}
			ct.keep = append(ct.keep, c)
		}},
		{"backend terminated while parked, then FIN", func(t *testing.T, ct *churnTarget) {
			c := ct.connect(t, f)
			pid := string(exec1(t, c, "SELECT pg_backend_pid()")[0][0])
			ct.waitParked(t, "backend terminated, then FIN")
			if _, err := su.Exec(ctx, "SELECT pg_terminate_backend("+pid+")"); err != nil {
				t.Fatal(err)
			}
			waitBackendGone(t, su, pid)
			_ = hijack(t, c).Close()
			ct.sockets--
			ct.closed++
			ct.want["client_eof"]++
		}},
	}
	for _, ct := range targets {
		// Two clients stay connected to the end: one that never queried,
		// one that did (in session mode it keeps its server connection).
		ct.keep = append(ct.keep, ct.connect(t, f))
		c := ct.connect(t, f)
		exec1(t, c, "SELECT 1")
		ct.keep = append(ct.keep, c)
		ct.waitParked(t, "kept clients")
		for _, p := range patterns {
			p.run(t, ct)
			ct.settle(t, p.name)
		}
	}

	// The primary shuts down (fast: every backend gets FATAL 57P01) under
	// parked sessions: those holding a server connection lose it, stay
	// connected and move on their next statement; one more client per
	// proxy leaves after.
	leaving := make([]*pgconn.PgConn, len(targets))
	for i, ct := range targets {
		leaving[i] = ct.connect(t, f)
		exec1(t, leaving[i], "SELECT 1")
		ct.waitParked(t, "before the primary's shutdown")
	}
	old := f.primary(t)
	if err := syscall.Kill(old.PID, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the old postmaster to exit", func() error {
		if err := syscall.Kill(old.PID, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return testutil.ErrNotYet
	})
	for i, ct := range targets {
		testutil.Eventually(t, 15*time.Second, ct.name+" proxy to drop its server connections", func() error {
			if n := ct.px.Stats().Servers; n != 0 {
				return fmt.Errorf("%d server connections lent", n)
			}
			return nil
		})
		_ = hijack(t, leaving[i]).Close()
		ct.sockets--
		ct.closed++
		ct.want["client_eof"]++
		ct.settle(t, "FIN after the primary's shutdown")
	}
	for _, ct := range targets {
		for _, c := range ct.keep {
			exec1(t, c, "SELECT 1") // held until a primary serves again
		}
		ct.waitParked(t, "after the primary's shutdown")
		ct.settle(t, "after the primary's shutdown")
	}

	// Every ended connection was counted once, under its cause.
	for _, ct := range targets {
		st, _ := getStatus(t, ct.px.AdminAddr())
		got := st.Ended["writer"]
		for _, cause := range []string{"terminate", "login_failed", "idle_timeout", "server_lost", "unavailable", "protocol", "cancel_request", "shutdown", "other"} {
			if got[cause] != ct.want[cause] {
				t.Errorf("%s proxy: ended{cause=%q} = %d, want %d (all: %v)", ct.name, cause, got[cause], ct.want[cause], got)
			}
		}
		eof, rst := got["client_eof"], got["client_reset"]
		if eof < ct.want["client_eof"] || rst < ct.want["client_reset"] || eof+rst != ct.want["client_eof"]+ct.want["client_reset"]+ct.eofOrReset {
			t.Errorf("%s proxy: ended client_eof %d, client_reset %d; want at least %d and %d, %d in all", ct.name, eof, rst,
				ct.want["client_eof"], ct.want["client_reset"], ct.want["client_eof"]+ct.want["client_reset"]+ct.eofOrReset)
		}
		// The metrics say the same: accepted - ended = open.
		m := scrape(t, ct.px.AdminAddr())
		accepted, _ := value(m, "holdfast_proxy_client_connections_total", "endpoint", "writer")
		open, _ := value(m, "holdfast_proxy_client_connections", "endpoint", "writer")
		parked, _ := value(m, "holdfast_proxy_client_connections_parked", "endpoint", "writer")
		ended := 0.0
		for _, s := range m {
			if s.name == "holdfast_proxy_client_connections_ended_total" && s.labels["endpoint"] == "writer" {
				ended += s.value
			}
		}
		if accepted-ended != open || open != float64(ct.sockets) || parked != open {
			t.Errorf("%s proxy metrics: %v accepted, %v ended, %v open, %v parked; %d sockets open", ct.name, accepted, ended, open, parked, ct.sockets)
		}
		if _, ok := value(m, "holdfast_proxy_goroutines"); !ok {
			t.Errorf("%s proxy: no holdfast_proxy_goroutines metric", ct.name)
		}
	}

	// Idle, with the kept clients parked: no more CPU than before any
	// client came, give or take 5 % of a core. The cluster settles first
	// (the old primary rejoins through this process's fault links), and a
	// window spoilt by something else gets two more chances: a spinning
	// session never lets one pass.
	f.waitAllRunning(t)
	limit := baseCPU + 500*time.Millisecond
	var used []time.Duration
	for len(used) < 3 {
		used = append(used, idleCPU())
		if used[len(used)-1] <= limit {
			break
		}
	}
	if last := used[len(used)-1]; last > limit {
		t.Errorf("idle with %d parked clients the process used %v of CPU per 10 s window (baseline %v, limit %v)", 3*len(targets), used, baseCPU, limit)
	} else {
		t.Logf("idle with parked clients: %v of CPU per 10 s window (baseline %v)", used, baseCPU)
	}

	// The kept clients leave too (FIN, RST, Terminate): nothing is left.
	for _, ct := range targets {
		for i, c := range ct.keep {
			switch i % 3 {
			case 0:
				_ = hijack(t, c).Close()
			case 1:
				reset(t, hijack(t, c))
			case 2:
				_ = c.Close(ctx)
			}
			ct.sockets--
			ct.closed++
		}
		ct.settle(t, "every client gone")
		if st := ct.px.Stats(); st.Goroutines != 0 || st.Servers != 0 {
			t.Errorf("%s proxy: %d goroutines, %d server connections lent with no client", ct.name, st.Goroutines, st.Servers)
		}
	}
	// The goroutines running the proxies' code are back to their
	// baseline, exactly.
	var dump string
	if err := pollUntil(30*time.Second, func() error {
		var n int
		if n, dump = proxyGoroutines(); n != baseGoroutines {
			return fmt.Errorf("%d goroutines in package proxy, baseline %d", n, baseGoroutines)
		}
		return nil
	}); err != nil {
		t.Errorf("%v:\n%s", err, dump)
	}
	t.Logf("%d goroutines in all (%d before any client)", runtime.NumGoroutine(), baseAll)
}
