package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/proxy/scram"
	"github.com/holdfast/holdfast/internal/testutil"
)

// sample is one line of the Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// scrape reads the proxy's /metrics.
func scrape(t *testing.T, admin string) []sample {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if j := strings.IndexByte(line[:i], '{'); j >= 0 {
			s.name = line[:j]
			for _, m := range labelRE.FindAllStringSubmatch(line[j:i], -1) {
				s.labels[m[1]] = m[2]
			}
		}
		out = append(out, s)
	}
	return out
}

// value returns the sample of name whose labels include want, and whether
// there is one.
func value(samples []sample, name string, want ...string) (float64, bool) {
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(want); i += 2 {
			if s.labels[want[i]] != want[i+1] {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

// metricIs polls /metrics until name{want...} equals v.
func metricIs(t *testing.T, admin string, v float64, name string, want ...string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s%v = %v", name, want, v), func() error {
		got, ok := value(scrape(t, admin), name, want...)
		if !ok || got != v {
			return fmt.Errorf("got %v (present: %v)", got, ok)
		}
		return nil
	})
}

func getStatus(t *testing.T, admin string) (proxy.Status, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /status: %s, %v", resp.Status, err)
	}
	var st proxy.Status
	var raw map[string]any
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("status %s: %v", body, err)
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	return st, raw
}

// TestMetricsAndStatus runs statements through the writer endpoint and
// checks that the counters moved and /status describes the proxy.
func TestMetricsAndStatus(t *testing.T) {
	f := startWith(t, func(c *proxy.Config) { c.AdminAddr = "127.0.0.1:0" })
	admin := f.px.AdminAddr()
	if admin == "" {
		t.Fatal("no admin address")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := pgx.Connect(ctx, f.dsn("writer", f.app.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)

	statements := 0
	for i := 0; i < 5; i++ { // extended protocol
		var n int
		if err := w.QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
			t.Fatalf("select %d: %d, %v", i, n, err)
		}
		statements++
	}
	if _, err := w.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	statements++
	tx, err := w.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 2"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	statements += 3
	var pgErr *pgconn.PgError
	if _, err := w.Exec(ctx, "SELECT 1/0"); !errors.As(err, &pgErr) || pgErr.Code != "22012" {
		t.Fatalf("SELECT 1/0: want 22012, got %v", err)
	}
	statements++
	if _, err := pgx.Connect(ctx, f.dsn("writer", "wrong")); !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: want 28P01, got %v", err)
	}

	metricIs(t, admin, 1, "holdfast_proxy_client_connections", "endpoint", "writer")
	m := scrape(t, admin)
	atLeast := func(min float64, name string, want ...string) {
		t.Helper()
		if got, ok := value(m, name, want...); !ok || got < min {
			t.Errorf("%s%v = %v (present: %v), want at least %v", name, want, got, ok, min)
		}
	}
	exactly := func(v float64, name string, want ...string) {
		t.Helper()
		if got, ok := value(m, name, want...); !ok || got != v {
			t.Errorf("%s%v = %v (present: %v), want %v", name, want, got, ok, v)
		}
	}
	atLeast(float64(statements), "holdfast_proxy_queries_total", "endpoint", "writer")
	// 5 + 1 + 1 (SELECT 1/0, rolled back) statements outside a block, and
	// the explicit transaction.
	atLeast(8, "holdfast_proxy_transactions_total", "endpoint", "writer")
	exactly(1, "holdfast_proxy_errors_total", "endpoint", "writer", "sqlstate", "22012", "source", "server")
	exactly(1, "holdfast_proxy_errors_total", "endpoint", "writer", "sqlstate", "28P01", "source", "proxy")
	exactly(1, "holdfast_proxy_client_logins_failed_total", "endpoint", "writer", "reason", "auth")
	exactly(0, "holdfast_proxy_client_logins_failed_total", "endpoint", "writer", "reason", "unavailable")
	atLeast(2, "holdfast_proxy_client_connections_total", "endpoint", "writer")
	exactly(0, "holdfast_proxy_client_connections", "endpoint", "reader")
	exactly(1, "holdfast_proxy_state", "endpoint", "writer")
	exactly(0, "holdfast_proxy_waiting")
	exactly(0, "holdfast_proxy_held_total", "endpoint", "writer", "outcome", "timeout")
	for _, o := range []string{"committed", "rolled_back", "id_reused", "unknown"} {
		exactly(0, "holdfast_proxy_commits_resolved_total", "endpoint", "writer", "outcome", o)
	}
	exactly(0, "holdfast_proxy_wait_seconds_count", "endpoint", "writer", "reason", "writer")
	primary := f.primary(t)
	atLeast(1, "holdfast_proxy_server_connections", "endpoint", "writer", "member", primary.Name, "state", "active")
	atLeast(0, "holdfast_proxy_server_connections", "endpoint", "writer", "member", primary.Name, "state", "idle")
	atLeast(0, "holdfast_proxy_pool_waiting", "endpoint", "writer", "member", primary.Name)

	// One client, with its server connection (session mode); the failed
	// login has ended.
	testutil.Eventually(t, 10*time.Second, "goroutines for one client", func() error {
		if st, _ := getStatus(t, admin); st.Goroutines != 2 || st.Ended["writer"]["login_failed"] != 1 {
			return fmt.Errorf("goroutines %d, ended %v", st.Goroutines, st.Ended)
		}
		return nil
	})
	st, raw := getStatus(t, admin)
	for _, k := range []string{"state", "writer", "clients", "servers", "waiting", "pool_mode", "pool_size", "pools", "hold_window", "uptime_seconds", "goroutines", "ended"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/status lacks %q: %v", k, raw)
		}
	}
	if st.State != proxy.StateServing || st.Writer == nil || st.Writer.Member != primary.Name || st.Writer.Addr == "" {
		t.Errorf("/status state %q writer %+v, want serving with %s", st.State, st.Writer, primary.Name)
	}
	if st.Clients["writer"] != 1 || st.Clients["reader"] != 0 || st.Servers < 1 || st.Waiting != 0 {
		t.Errorf("/status clients %v servers %d waiting %d", st.Clients, st.Servers, st.Waiting)
	}
	if len(st.Ended["writer"]) != 1 || len(st.Ended["reader"]) != 0 {
		t.Errorf("/status ended %v; want one login_failed and nothing else", st.Ended)
	}
	if st.PoolMode != proxy.PoolSession || st.PoolSize != proxy.DefaultConfig().PoolSize || st.HoldWindow != "30s" {
		t.Errorf("/status pool_mode %q pool_size %d hold_window %q", st.PoolMode, st.PoolSize, st.HoldWindow)
	}
	if len(st.Pools) == 0 || st.Pools[0].Member != primary.Name || st.Pools[0].Active < 1 {
		t.Errorf("/status pools %+v", st.Pools)
	}
}

// noWriterProxy opens a proxy whose router knows no cluster (so it never
// has a writer) for user "app" with password "secret".
func noWriterProxy(t *testing.T, mutate func(*proxy.Config)) (*proxy.Server, error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := scram.NewVerifier("secret", 4096)
	if err != nil {
		t.Fatal(err)
	}
	pc := proxy.DefaultConfig()
	pc.WriterAddr, pc.ReaderAddr, pc.AdminAddr = "127.0.0.1:0", "", "127.0.0.1:0"
	if mutate != nil {
		mutate(&pc)
	}
	px, err := proxy.New(pc, proxy.NewRouter(nil, "home", time.Second, log), proxy.StaticUsers{"app": {Verifier: v, ServerPassword: "x"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := px.Open(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = px.Close() })
	return px, nil
}

// TestMetricsWhileHolding checks, without PostgreSQL, what clients waiting
// for a writer look like: the waiting gauge and /status while they wait,
// then the hold outcomes, the wait histogram and the failed logins.
func TestMetricsWhileHolding(t *testing.T) {
	px, err := noWriterProxy(t, func(c *proxy.Config) { c.HoldWindow, c.MaxWaiting = 2*time.Second, 1 })
	if err != nil {
		t.Fatal(err)
	}
	admin := px.AdminAddr()
	dsn := func(password string) string {
		return fmt.Sprintf("postgres://app:%s@%s/app?sslmode=disable&connect_timeout=10", password, px.Addr("writer"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pgErr *pgconn.PgError
	if _, err := pgx.Connect(ctx, dsn("wrong")); !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: want 28P01, got %v", err)
	}

	held := make(chan error, 1)
	go func() {
		c, err := pgx.Connect(ctx, dsn("secret"))
		if err == nil {
			c.Close(ctx)
		}
		held <- err
	}()
	testutil.Eventually(t, 10*time.Second, "a client holding", func() error {
		st, _ := getStatus(t, admin)
		if st.State != proxy.StateHolding || st.Writer != nil || st.Waiting != 1 {
			return fmt.Errorf("state %q writer %+v waiting %d", st.State, st.Writer, st.Waiting)
		}
		return nil
	})
	m := scrape(t, admin)
	for _, c := range []struct {
		name string
		want []string
		v    float64
	}{
		{"holdfast_proxy_waiting", nil, 1},
		{"holdfast_proxy_state", []string{"endpoint", "writer"}, 0},
		{"holdfast_proxy_client_connections", []string{"endpoint", "writer"}, 1},
	} {
		if got, ok := value(m, c.name, c.want...); !ok || got != c.v {
			t.Errorf("%s%v = %v (present: %v), want %v", c.name, c.want, got, ok, c.v)
		}
	}
	// max_waiting is 1: the next client is refused at once.
	if _, err := pgx.Connect(ctx, dsn("secret")); !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Fatalf("client beyond max_waiting: want 53300, got %v", err)
	}
	if err := <-held; !errors.As(err, &pgErr) || pgErr.Code != "57P03" {
		t.Fatalf("held client: want 57P03 after the hold window, got %v", err)
	}

	metricIs(t, admin, 0, "holdfast_proxy_client_connections", "endpoint", "writer")
	metricIs(t, admin, 0, "holdfast_proxy_goroutines")
	m = scrape(t, admin)
	for _, c := range []struct {
		name string
		want []string
		v    float64
	}{
		{"holdfast_proxy_waiting", nil, 0},
		{"holdfast_proxy_held_total", []string{"endpoint", "writer", "outcome", "timeout"}, 1},
		{"holdfast_proxy_held_total", []string{"endpoint", "writer", "outcome", "rejected"}, 1},
		{"holdfast_proxy_held_total", []string{"endpoint", "writer", "outcome", "served"}, 0},
		{"holdfast_proxy_wait_seconds_count", []string{"endpoint", "writer", "reason", "writer"}, 1},
		{"holdfast_proxy_wait_seconds_bucket", []string{"endpoint", "writer", "reason", "writer", "le", "1"}, 0},
		{"holdfast_proxy_client_logins_failed_total", []string{"endpoint", "writer", "reason", "auth"}, 1},
		{"holdfast_proxy_client_logins_failed_total", []string{"endpoint", "writer", "reason", "limit"}, 1},
		{"holdfast_proxy_client_logins_failed_total", []string{"endpoint", "writer", "reason", "unavailable"}, 1},
		{"holdfast_proxy_errors_total", []string{"endpoint", "writer", "sqlstate", "28P01", "source", "proxy"}, 1},
		{"holdfast_proxy_errors_total", []string{"endpoint", "writer", "sqlstate", "53300", "source", "proxy"}, 1},
		{"holdfast_proxy_errors_total", []string{"endpoint", "writer", "sqlstate", "57P03", "source", "proxy"}, 1},
		{"holdfast_proxy_client_connections_total", []string{"endpoint", "writer"}, 3},
		{"holdfast_proxy_queries_total", []string{"endpoint", "writer"}, 0},
		// Every connection ended as a failed login: wrong password,
		// max_waiting, hold window.
		{"holdfast_proxy_client_connections_ended_total", []string{"endpoint", "writer", "cause", "login_failed"}, 3},
		{"holdfast_proxy_client_connections_ended_total", []string{"endpoint", "writer", "cause", "client_eof"}, 0},
		{"holdfast_proxy_client_connections_ended_total", []string{"endpoint", "writer", "cause", "other"}, 0},
	} {
		if got, ok := value(m, c.name, c.want...); !ok || got != c.v {
			t.Errorf("%s%v = %v (present: %v), want %v", c.name, c.want, got, ok, c.v)
		}
	}
	if _, ok := value(m, "holdfast_proxy_server_connections"); ok {
		t.Error("server connections reported without any pool")
	}
	if _, ok := value(m, "go_goroutines"); !ok {
		t.Error("no Go runtime metrics")
	}
}

// TestMetricsAdminAddrInUse: Open fails at once, naming the admin endpoint,
// when its port is taken, and leaves the proxy's endpoints closed.
func TestMetricsAdminAddrInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	writer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writerAddr := writer.Addr().String()
	writer.Close()
	_, err = noWriterProxy(t, func(c *proxy.Config) { c.AdminAddr, c.WriterAddr = l.Addr().String(), writerAddr })
	if err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("want an error naming the admin endpoint, got %v", err)
	}
	// The writer endpoint it had bound was closed again.
	again, err := net.Listen("tcp", writerAddr)
	if err != nil {
		t.Fatalf("writer endpoint left open after a failed Open: %v", err)
	}
	again.Close()
}

// TestStatusWithoutAdminAddr: an empty admin address serves nothing.
func TestStatusWithoutAdminAddr(t *testing.T) {
	px, err := noWriterProxy(t, func(c *proxy.Config) { c.AdminAddr = "" })
	if err != nil {
		t.Fatal(err)
	}
	if a := px.AdminAddr(); a != "" {
		t.Fatalf("AdminAddr() = %q with admin_addr empty", a)
	}
	if st := px.Status(); st.State != proxy.StateHolding || st.Pools == nil || st.HoldWindow != "30s" || st.PoolMode != proxy.PoolSession {
		t.Fatalf("Status() = %+v", st)
	}
}
