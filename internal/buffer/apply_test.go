package buffer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/testutil"
)

// testHandlers are the kinds of write this package's tests use (more are
// added by other files' init): GET /ingest's, and
//   - test-ingest, which inserts {"guid": ...} into test_ingest; a payload
//     that is not JSON is rejected by the handler, a guid that is not a
//     uuid by PostgreSQL (22P02): both permanent;
//   - test-transient, which fails like a database in the middle of a
//     failover.
var testHandlers = Handlers{
	KindIngest: ingestHandler{},
	"test-ingest": HandlerFuncs{ApplyFunc: func(ctx context.Context, tx pgx.Tx, w Write) error {
		var p struct {
			GUID string `json:"guid"`
		}
		if err := json.Unmarshal(w.Payload, &p); err != nil {
			return fmt.Errorf("%w: payload: %v", ErrRejected, err)
		}
		_, err := tx.Exec(ctx, "INSERT INTO test_ingest (guid, requested_at) VALUES ($1, $2)", p.GUID, w.AcceptedAt)
		return err
	}},
	"test-transient": HandlerFuncs{ApplyFunc: func(ctx context.Context, tx pgx.Tx, w Write) error {
		return &pgconn.PgError{Code: "25006", Message: "cannot execute INSERT in a read-only transaction"}
	}},
}

// testIngestDDL is the table of the test-ingest kind.
const testIngestDDL = "CREATE TABLE test_ingest (guid uuid PRIMARY KEY, requested_at timestamptz)"

// startDatabase starts PostgreSQL, connects, creates the committer's table
// and runs ddl. ctx ends with the test.
func startDatabase(t testing.TB, ddl ...string) (*testutil.Postgres, *pgx.Conn, context.Context) {
	t.Helper()
	pg := testutil.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if err := Migrate(ctx, conn, testHandlers); err != nil {
		t.Fatal(err)
	}
	for _, q := range ddl {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return pg, conn, ctx
}

func TestApplyBatch(t *testing.T) {
	_, conn, ctx := startDatabase(t, testIngestDDL)
	if err := Migrate(ctx, conn, testHandlers); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	count := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM test_ingest").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	now := time.Now()
	w := func(key, payload string) Write {
		return Write{Kind: "test-ingest", Key: key, Payload: []byte(payload), AcceptedAt: now}
	}
	batch := []Write{
		w("k1", `{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}`),
		w("k2", `{"guid":"not-a-uuid"}`), // PostgreSQL refuses it: 22P02
		w("k3", `{"guid":"1b4e28ba-2fa1-11d2-883f-0016d3cca427"}`),
		w("k4", `not json`), // the handler rejects it
		{Kind: "no-such-kind", Key: "k5", Payload: []byte(`{}`), AcceptedAt: now},
		w("k1", `{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}`), // the same key again
	}
	out, _, err := applyBatch(ctx, conn, testHandlers, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"applied", "error", "applied", "rejected", "rejected", "duplicate"}
	check := func(out []Outcome, want []string) {
		t.Helper()
		for i, o := range out {
			got := "applied"
			switch {
			case o.Duplicate:
				got = "duplicate"
			case o.Err != nil && errors.Is(o.Err, ErrRejected):
				got = "rejected"
			case o.Err != nil:
				got = "error"
				if Transient(o.Err) {
					t.Errorf("write %s: %v classified transient", o.Key, o.Err)
				}
			case !o.Applied:
				got = "nothing"
			}
			if got != want[i] {
				t.Errorf("write %s: %s (%v), want %s", o.Key, got, o.Err, want[i])
			}
		}
	}
	check(out, want)
	if n := count(); n != 2 {
		t.Fatalf("%d rows after the batch, want 2", n)
	}

	// Redelivered (a committer crashed before acknowledging it): no
	// second effect.
	out, _, err = applyBatch(ctx, conn, testHandlers, batch)
	if err != nil {
		t.Fatal(err)
	}
	check(out, []string{"duplicate", "error", "duplicate", "rejected", "rejected", "duplicate"})
	if n := count(); n != 2 {
		t.Fatalf("%d rows after redelivery, want 2", n)
	}

	// A transient failure aborts the whole batch: nothing of it commits.
	_, _, err = applyBatch(ctx, conn, testHandlers, []Write{
		w("k6", `{"guid":"9b2d1c9e-1111-4a3b-8c7d-000000000006"}`),
		{Kind: "test-transient", Key: "k7", Payload: []byte(`{}`), AcceptedAt: now},
	})
	if err == nil || !Transient(err) {
		t.Fatalf("batch with a transient failure: %v, want a transient error", err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows after a transient failure, want 2 (nothing committed)", n)
	}
	var keys int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM holdfast_buffer_applied").Scan(&keys); err != nil || keys != 2 {
		t.Fatalf("%d applied keys recorded (%v), want 2", keys, err)
	}
}

func TestNewHandlers(t *testing.T) {
	hs, err := NewHandlers(IngestHandlers(), Handlers{"test-ingest": HandlerFuncs{}})
	if err != nil || len(hs) != 2 {
		t.Fatalf("two sets of one kind each: %v, %v", hs, err)
	}
	if _, ok := hs.Lookup(KindIngest); !ok {
		t.Fatal("the joined set lacks the ingest kind")
	}
	if _, err := NewHandlers(IngestHandlers(), IngestHandlers()); err == nil || !strings.Contains(err.Error(), "two handlers") {
		t.Fatalf("a kind in two sets: %v, want an error", err)
	}
	if _, err := NewHandlers(Handlers{"": HandlerFuncs{}}); err == nil {
		t.Fatal("a kind without a name: no error")
	}
	if _, err := NewHandlers(Handlers{"k": nil}); err == nil {
		t.Fatal("a kind without a handler: no error")
	}
}

// restartPostgres starts a stopped pg again and connects to it; the
// connection is closed when the test ends.
func restartPostgres(t *testing.T, ctx context.Context, pg *testutil.Postgres) *pgx.Conn {
	t.Helper()
	if err := pg.Inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestDuplicatesWaitForSynchronousStandbys: a batch whose writes are all
// found applied before still commits a transaction that waits for the
// synchronous standbys, so that it is acknowledged only once those
// earlier commits are durable. (A primary restarted in place after a crash
// shows commits no standby confirmed: acknowledging a batch on the strength
// of them lost it at the next failover.) The database here has a
// synchronous standby that never comes: the batch must wait for it.
func TestDuplicatesWaitForSynchronousStandbys(t *testing.T) {
	pg, conn, ctx := startDatabase(t, testIngestDDL)
	batch := []Write{
		{Kind: "test-ingest", Key: "s1", Payload: []byte(`{"guid":"0d7a8a52-5a1f-4c55-9a26-3c1b0f6a0001"}`), AcceptedAt: time.Now()},
		{Kind: "test-ingest", Key: "s2", Payload: []byte(`{"guid":"0d7a8a52-5a1f-4c55-9a26-3c1b0f6a0002"}`), AcceptedAt: time.Now()},
	}
	out, stamp, err := applyBatch(ctx, conn, testHandlers, batch)
	if err != nil || !out[0].Applied || !out[1].Applied {
		t.Fatalf("first apply: %+v, %v", out, err)
	}
	// The same server answers the commit position: same stamp.
	if _, at, err := commitPosition(ctx, conn); err != nil || at != stamp {
		t.Fatalf("commit position stamp %v (%v), transaction's %v", at, err, stamp)
	}

	setSyncNames := func(v string) {
		t.Helper()
		if _, err := conn.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = '"+v+"'"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, "the reload", func() error {
			c, err := pgx.Connect(ctx, pg.DSN)
			if err != nil {
				return err
			}
			defer c.Close(context.Background())
			var got string
			if err := c.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&got); err != nil || got != v {
				return fmt.Errorf("synchronous_standby_names %q (%v), want %q", got, err, v)
			}
			return nil
		})
	}
	setSyncNames("never_connects")

	c2, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(context.Background())
	type result struct {
		out []Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, _, err := applyBatch(ctx, c2, testHandlers, batch)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("a batch of duplicates committed without waiting for the synchronous standby: %+v, %v", r.out, r.err)
	case <-time.After(3 * time.Second):
	}
	// Once nothing is required of standbys any more, it completes: both
	// writes found applied, nothing applied twice.
	setSyncNames("")
	r := <-done
	if r.err != nil || !r.out[0].Duplicate || !r.out[1].Duplicate {
		t.Fatalf("after the standby requirement went: %+v, %v", r.out, r.err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM test_ingest").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows (%v), want 2", n, err)
	}
}
