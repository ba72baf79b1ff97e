package drill

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/postgres"
	"github.com/holdfast/holdfast/internal/testutil"
)

// TestLoadReconciles runs the SQL and buffer paths against a real
// PostgreSQL whose server is stopped for a while in the middle: the SQL
// path sees errors and no lost acknowledged write; the buffer path sees no
// error at all and, once drained, no lost write and no duplicate.
func TestLoadReconciles(t *testing.T) {
	pg := testutil.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, TableDDL); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	svc, err := buffer.StartService(ctx, buffer.ServiceConfig{
		Embedded:  buffer.EmbeddedConfig{Addr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), StoreDir: t.TempDir()},
		Committer: buffer.DefaultCommitterConfig(pg.DSN), Ingest: buffer.DefaultIngestConfig(),
		Handlers: BufferHandlers(),
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	mux := http.NewServeMux()
	svc.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	sqlLoad := &Load{Drill: "t-sql", Writer: &SQLWriter{Target: func(context.Context) (string, error) { return pg.DSN, nil }, Conns: 8},
		Rate: 100, Concurrency: 8, Timeout: 5 * time.Second}
	bufLoad := &Load{Drill: "t-buffer", Writer: &BufferWriter{URL: srv.URL, Client: &http.Client{}},
		Rate: 100, Concurrency: 8, Timeout: 5 * time.Second}
	lctx, stopLoad := context.WithCancel(ctx)
	start := time.Now()
	done := make(chan struct{}, 2)
	go func() { sqlLoad.Run(lctx); done <- struct{}{} }()
	go func() { bufLoad.Run(lctx); done <- struct{}{} }()
	testutil.Eventually(t, 30*time.Second, "writes before the fault", func() error {
		if n := len(sqlLoad.Records()); n < 50 {
			return fmt.Errorf("%d", n)
		}
		return nil
	})
	fault := time.Now()
	if err := pg.Inst.Stop(ctx, postgres.StopImmediate); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "errors on the SQL path", func() error {
		for _, r := range sqlLoad.Records() {
			if r.Outcome != OK && r.Sent.After(fault) {
				return nil
			}
		}
		return fmt.Errorf("no failed write yet")
	})
	if err := pg.Inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	testutil.Eventually(t, 30*time.Second, "SQL writes after the restart", func() error {
		for _, r := range sqlLoad.Records() {
			if r.Outcome == OK && r.Sent.After(restarted) {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	stopLoad()
	<-done
	<-done
	end := time.Now()
	testutil.Eventually(t, 60*time.Second, "the buffer drained", func() error {
		st, err := svc.Status(ctx)
		if err != nil || st.Pending > 0 {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})
	conn, err = pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	w := Window{Start: start, End: end, Fault: fault}
	for _, l := range []*Load{sqlLoad, bufLoad} {
		stored, err := Stored(ctx, conn, l.Drill)
		if err != nil {
			t.Fatal(err)
		}
		r := Summarize("stop-postgres", l.Drill, l.Rate, w, l.Records(), stored, nil)
		t.Logf("%s: %d requests, %d ok, %d errors, %d unknown, %d lost, %d duplicates, downtime %d ms, recovery %d ms",
			l.Drill, r.Requests, r.OK, r.Errors, r.Unknown, r.LostAcked, r.Duplicates, r.DowntimeMS, r.RecoveryMS)
		if r.LostAcked != 0 || r.Duplicates != 0 {
			t.Errorf("%s: %d lost acknowledged writes, %d duplicates", l.Drill, r.LostAcked, r.Duplicates)
		}
		// Every write the database holds was requested by the load.
		if len(stored) > r.Requests {
			t.Errorf("%s: %d ids stored for %d requests", l.Drill, len(stored), r.Requests)
		}
		if l == bufLoad && (r.Errors != 0 || r.Unknown != 0 || r.DowntimeMS > 1000) {
			t.Errorf("buffer path: %d errors, %d unknown, downtime %d ms while the database was down", r.Errors, r.Unknown, r.DowntimeMS)
		}
		if l == sqlLoad && r.Errors+r.Unknown == 0 {
			t.Errorf("the SQL path saw no error with the database down: the drill cannot tell")
		}
	}
}
