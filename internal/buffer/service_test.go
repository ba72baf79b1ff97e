package buffer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/holdfast/holdfast/internal/postgres"
	htestutil "github.com/holdfast/holdfast/internal/testutil"
)

func init() {
	// test-fixable inserts {"guid", "n"} into test_fixable, whose CHECK
	// refuses n <= 0 (23514, permanent) until a test drops it.
	testHandlers["test-fixable"] = HandlerFuncs{ApplyFunc: func(ctx context.Context, tx pgx.Tx, w Write) error {
		var p struct {
			GUID string `json:"guid"`
			N    int    `json:"n"`
		}
		if err := json.Unmarshal(w.Payload, &p); err != nil {
			return fmt.Errorf("%w: payload: %v", ErrRejected, err)
		}
		_, err := tx.Exec(ctx, "INSERT INTO test_fixable (guid, n) VALUES ($1, $2)", p.GUID, p.N)
		return err
	}}
}

const testFixableDDL = "CREATE TABLE test_fixable (guid uuid PRIMARY KEY, n int CONSTRAINT n_positive CHECK (n > 0))"

// serviceFixture is a Service on a real PostgreSQL and its own embedded
// NATS, behind an HTTP server with every route (admin unguarded).
type serviceFixture struct {
	t    *testing.T
	pg   *htestutil.Postgres
	conn *pgx.Conn
	cfg  ServiceConfig
	reg  *prometheus.Registry
	svc  *Service
	srv  *httptest.Server
}

func startServiceFixture(t *testing.T, ddl ...string) *serviceFixture {
	t.Helper()
	return startServiceFixtureNATS(t, "", ddl...)
}

// startServiceFixtureNATS uses the NATS at natsURL ("" embeds one).
func startServiceFixtureNATS(t *testing.T, natsURL string, ddl ...string) *serviceFixture {
	t.Helper()
	f := &serviceFixture{t: t}
	f.pg, f.conn, _ = startDatabase(t, append([]string{IngestDDL}, ddl...)...)
	cc := DefaultCommitterConfig(f.pg.DSN)
	cc.MaxAttempts = 3
	cc.RetryBase, cc.RetryMax = 20*time.Millisecond, 500*time.Millisecond
	cc.AckWait = 5 * time.Second
	cc.Log.PublishTimeout = 30 * time.Second
	f.cfg = ServiceConfig{
		NATSURL:   natsURL,
		Embedded:  EmbeddedConfig{Addr: fmt.Sprintf("127.0.0.1:%d", htestutil.FreePort(t)), StoreDir: t.TempDir()},
		Committer: cc,
		Ingest:    DefaultIngestConfig(),
		Handlers:  testHandlers,
	}
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *serviceFixture) start() {
	f.t.Helper()
	f.reg = prometheus.NewRegistry()
	f.cfg.Registerer = f.reg
	svc, err := StartService(context.Background(), f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.t.Fatal(err)
	}
	f.svc = svc
	mux := http.NewServeMux()
	svc.Register(mux)
	svc.RegisterAdmin(mux, func(h http.HandlerFunc) http.HandlerFunc { return h })
	f.srv = httptest.NewServer(mux)
}

func (f *serviceFixture) stop() {
	if f.srv != nil {
		f.srv.Close()
		f.svc.Close()
		f.srv = nil
	}
}

// call sends a request and decodes a JSON answer into out (if not nil).
func (f *serviceFixture) call(method, path string, body any, out any) int {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			f.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func (f *serviceFixture) post(kind, key string, payload any) int {
	f.t.Helper()
	return f.call("POST", "/v1/writes", map[string]any{"kind": kind, "key": key, "payload": payload}, nil)
}

func (f *serviceFixture) status(key string) (WriteStatus, int) {
	f.t.Helper()
	var ws WriteStatus
	code := f.call("GET", "/v1/writes/"+url.PathEscape(key), nil, &ws)
	return ws, code
}

func (f *serviceFixture) waitStatus(key, want string) WriteStatus {
	f.t.Helper()
	var ws WriteStatus
	htestutil.Eventually(f.t, 30*time.Second, key+" "+want, func() error {
		var code int
		if ws, code = f.status(key); code != http.StatusOK || ws.Status != want {
			return fmt.Errorf("HTTP %d, %+v", code, ws)
		}
		return nil
	})
	return ws
}

func (f *serviceFixture) count(q string) int {
	f.t.Helper()
	var n int
	if err := f.conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestServiceWriteStatusAndDeadLetters walks writes through their
// statuses: committed, pending while the database is down (and across a
// restart of the buffer), dead after the attempt limit, redriven once the
// cause is fixed (once, however often redriven), dropped.
func TestServiceWriteStatusAndDeadLetters(t *testing.T) {
	f := startServiceFixture(t, testFixableDDL)
	const g1 = "11111111-1111-4111-8111-111111111111"
	if code := f.post(KindIngest, "w1", map[string]string{"guid": g1}); code != http.StatusAccepted {
		t.Fatalf("POST = %d", code)
	}
	ws := f.waitStatus("w1", StatusCommitted)
	if ws.Attempts != 1 || ws.CommittedAt == nil || ws.Kind != KindIngest || ws.AcceptedAt.IsZero() {
		t.Fatalf("committed write: %+v", ws)
	}
	if _, code := f.status("never-sent"); code != http.StatusNotFound {
		t.Fatalf("unknown key: HTTP %d, want 404", code)
	}

	// A write whose check fails goes dead after 3 attempts, with its error.
	if code := f.post("test-fixable", "bad/1", map[string]any{"guid": "22222222-2222-4222-8222-222222222222", "n": 0}); code != http.StatusAccepted {
		t.Fatalf("POST = %d", code)
	}
	if code := f.post("test-fixable", "bad/2", map[string]any{"guid": "33333333-3333-4333-8333-333333333333", "n": -1}); code != http.StatusAccepted {
		t.Fatalf("POST = %d", code)
	}
	dead := f.waitStatus("bad/1", StatusDead)
	if dead.Attempts != 3 || !strings.Contains(dead.LastError, "n_positive") {
		t.Fatalf("dead write: %+v", dead)
	}
	f.waitStatus("bad/2", StatusDead)
	var list struct{ Writes []DeadJSON }
	if code := f.call("GET", "/v1/dlq", nil, &list); code != http.StatusOK || len(list.Writes) != 2 || list.Writes[0].Key != "bad/1" {
		t.Fatalf("GET /v1/dlq = %d %+v", code, list)
	}
	if string(list.Writes[0].Payload) != `{"guid":"22222222-2222-4222-8222-222222222222","n":0}` {
		t.Fatalf("dead payload %s", list.Writes[0].Payload)
	}
	// The counters follow once the batches are acknowledged to JetStream
	// (the dead letters are stored before).
	htestutil.Eventually(t, 10*time.Second, "the counters", func() error {
		var st Status
		if code := f.call("GET", "/v1/buffer/status", nil, &st); code != http.StatusOK || st.Dead != 2 || st.DeadLettered != 2 || st.Committed != 1 {
			return fmt.Errorf("status = %d %+v", code, st)
		}
		return nil
	})

	// Fix the cause, redrive twice: applied once.
	if _, err := f.conn.Exec(context.Background(), "ALTER TABLE test_fixable DROP CONSTRAINT n_positive"); err != nil {
		t.Fatal(err)
	}
	var rr RedriveResult
	if code := f.call("POST", "/v1/dlq/redrive", RedriveRequest{Key: "bad/1"}, &rr); code != http.StatusOK || len(rr.Redriven) != 1 {
		t.Fatalf("redrive = %d %+v", code, rr)
	}
	if code := f.call("POST", "/v1/dlq/redrive", RedriveRequest{Key: "bad/1"}, &rr); code != http.StatusOK || len(rr.AlreadyRedriven) != 1 {
		t.Fatalf("second redrive = %d %+v", code, rr)
	}
	ws = f.waitStatus("bad/1", StatusCommitted)
	if ws.Attempts != 1 {
		t.Fatalf("redriven write committed with attempts %d, want a fresh count (1)", ws.Attempts)
	}
	if n := f.count("SELECT count(*) FROM test_fixable"); n != 1 {
		t.Fatalf("%d rows after redriving twice, want 1", n)
	}
	// Drop the other; dropping again is a 404.
	if code := f.call("DELETE", "/v1/dlq/"+url.PathEscape("bad/2"), nil, nil); code != http.StatusOK {
		t.Fatalf("drop = %d", code)
	}
	if code := f.call("DELETE", "/v1/dlq/"+url.PathEscape("bad/2"), nil, nil); code != http.StatusNotFound {
		t.Fatalf("second drop = %d, want 404", code)
	}
	if _, code := f.status("bad/2"); code != http.StatusNotFound {
		t.Fatalf("dropped write: HTTP %d, want 404", code)
	}
	if code := f.call("POST", "/v1/dlq/redrive", RedriveRequest{Key: "bad/2"}, nil); code != http.StatusNotFound {
		t.Fatalf("redrive of a dropped write = %d, want 404", code)
	}
	if code := f.call("POST", "/v1/dlq/redrive", map[string]any{"key": "x", "all": true}, nil); code != http.StatusBadRequest {
		t.Fatalf("redrive with key and all = %d, want 400", code)
	}

	// With the database down, writes are accepted and pending, also after
	// the buffer restarts (the index is rebuilt from the stream).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f.conn.Close(ctx)
	if err := f.pg.Inst.Stop(ctx, postgres.StopImmediate); err != nil {
		t.Fatal(err)
	}
	const g2 = "44444444-4444-4444-8444-444444444444"
	if code := f.post(KindIngest, "w2", map[string]string{"guid": g2}); code != http.StatusAccepted {
		t.Fatalf("POST with the database down = %d", code)
	}
	f.waitStatus("w2", StatusPending)
	f.stop()
	f.start()
	ws = f.waitStatus("w2", StatusPending)
	if ws.AcceptedAt.IsZero() || ws.Kind != KindIngest {
		t.Fatalf("pending write after restart: %+v", ws)
	}
	var st Status
	if code := f.call("GET", "/v1/buffer/status", nil, &st); code != http.StatusOK || st.Pending != 1 || st.OldestPendingSeconds <= 0 {
		t.Fatalf("status with one write pending = %d %+v", code, st)
	}
	f.conn = restartPostgres(t, ctx, f.pg)
	f.waitStatus("w2", StatusCommitted)
	if n := f.count("SELECT count(*) FROM ingest"); n != 2 {
		t.Fatalf("%d ingest rows, want 2", n)
	}
	htestutil.Eventually(t, 10*time.Second, "nothing pending", func() error {
		if n, _ := f.svc.index.depth(); n != 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	// The counter moves when the committer settles the batch, just after
	// the write shows as committed.
	htestutil.Eventually(t, 10*time.Second, "writes_settled_total{committed} = 1 after the restart", func() error {
		if got := testutil.ToFloat64(f.svc.metrics.outcomes.WithLabelValues(outcomeCommitted)); got != 1 {
			return fmt.Errorf("writes_settled_total{committed} = %v", got)
		}
		return nil
	})
	n, err := testutil.GatherAndCount(f.reg, "holdfast_buffer_pending_writes", "holdfast_buffer_dead_letter_writes", "holdfast_buffer_commit_latency_seconds")
	if err != nil || n != 3 {
		t.Fatalf("metrics: %d series, %v", n, err)
	}
}

// TestServiceExternalNATS: with buffer.nats_url the buffer embeds no
// server and keeps its streams on the given one.
func TestServiceExternalNATS(t *testing.T) {
	n := startNATS(t)
	f := startServiceFixtureNATS(t, n.srv.ClientURL())
	if f.svc.nats != nil {
		t.Fatal("an embedded NATS server was started")
	}
	const g = "55555555-5555-4555-8555-555555555555"
	if code := f.post(KindIngest, "x1", map[string]string{"guid": g}); code != http.StatusAccepted {
		t.Fatalf("POST = %d", code)
	}
	f.waitStatus("x1", StatusCommitted)
	js, err := jetstream.New(n.nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{f.cfg.Committer.Log.Stream, f.cfg.Committer.DeadStream} {
		if _, err := js.Stream(context.Background(), name); err != nil {
			t.Fatalf("stream %s on the external server: %v", name, err)
		}
	}
}

// TestBufferRidesOutDatabaseOutage: PostgreSQL down for 60 s under a
// steady ingest load over HTTP. Every write is acknowledged throughout;
// afterwards every acknowledged write is committed exactly once, and none
// is dead-lettered (transient failures do not count).
func TestBufferRidesOutDatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s outage")
	}
	t.Parallel()
	f := startServiceFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	var (
		mu      sync.Mutex
		acked   []string
		refused atomic.Int64
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; loadCtx.Err() == nil; i++ {
				g := guid(fmt.Sprintf("client%d", c), i)
				body := fmt.Sprintf(`{"kind":"ingest","key":%q,"payload":{"guid":%q}}`, g, g)
				resp, err := http.Post(f.srv.URL+"/v1/writes", "application/json", strings.NewReader(body))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusAccepted {
					refused.Add(1)
				} else {
					mu.Lock()
					acked = append(acked, g)
					mu.Unlock()
				}
				select {
				case <-loadCtx.Done():
				case <-tick.C:
				}
			}
		}()
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	htestutil.Eventually(t, 30*time.Second, "some writes committed", func() error {
		if f.svc.committer.Applied.Load() < 100 {
			return fmt.Errorf("%d committed", f.svc.committer.Applied.Load())
		}
		return nil
	})
	f.conn.Close(ctx)
	if err := f.pg.Inst.Stop(ctx, postgres.StopImmediate); err != nil {
		t.Fatal(err)
	}
	downAt, before := time.Now(), ackedCount()
	// The outage lasts 60 s of wall time: the load runs meanwhile.
	htestutil.Eventually(t, 2*time.Minute, "60 s of outage", func() error {
		if d := time.Since(downAt); d < 60*time.Second {
			return fmt.Errorf("down for %s", d.Round(time.Second))
		}
		return nil
	})
	duringOutage := ackedCount() - before
	f.conn = restartPostgres(t, ctx, f.pg)
	htestutil.Eventually(t, 3*time.Minute, "writes committed after the outage", func() error {
		if f.svc.committer.Applied.Load() < uint64(before+duringOutage) {
			return fmt.Errorf("%d committed", f.svc.committer.Applied.Load())
		}
		return nil
	})
	stopLoad()
	wg.Wait()
	if n := refused.Load(); n != 0 {
		t.Fatalf("%d writes refused during the outage", n)
	}
	if duringOutage < 1000 {
		t.Fatalf("only %d writes acknowledged during the outage", duringOutage)
	}
	conn := f.conn
	total := ackedCount()
	htestutil.Eventually(t, 60*time.Second, "every acknowledged write committed", func() error {
		if n := f.count("SELECT count(*) FROM ingest"); n < total {
			return fmt.Errorf("%d of %d rows", n, total)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	var missing int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM unnest($1::uuid[]) AS a(g) WHERE NOT EXISTS (SELECT 1 FROM ingest WHERE guid = a.g)", acked).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Fatalf("%d acknowledged writes not committed", missing)
	}
	if n, k := f.count("SELECT count(*) FROM ingest"), f.count("SELECT count(*) FROM holdfast_buffer_applied"); n != total || k != total {
		t.Fatalf("%d rows and %d applied keys for %d acknowledged writes", n, k, total)
	}
	if d := f.svc.committer.Dead.Load(); d != 0 {
		t.Fatalf("%d writes dead-lettered for a transient outage", d)
	}
	t.Logf("%d writes acknowledged, %d during the 60 s outage; all committed once", total, duringOutage)
}
