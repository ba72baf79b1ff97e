package testutil

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/postgres"
)

// Postgres is one PostgreSQL server started for a test.
type Postgres struct {
	Inst *postgres.Instance
	// DSN connects as the superuser over TCP.
	DSN string
}

// StartPostgres initialises and starts a PostgreSQL server on a free port
// (as the postgres OS user when the test runs as root); it is stopped when
// the test ends. The test is skipped when PostgreSQL is not installed, and
// in -short (make test-unit: the unit tier).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (a real PostgreSQL): skipped in -short")
	}
	if !HavePostgres() {
		t.Skip("PostgreSQL 15 is not installed")
	}
	base := TempDir(t)
	for _, p := range []string{filepath.Dir(base), base} {
		_ = os.Chmod(p, 0o755)
	}
	const password = "test-superuser"
	port := FreePort(t)
	inst, err := postgres.New(postgres.Config{
		Name: "pg", DataDir: filepath.Join(base, "data"), ConfDir: filepath.Join(base, "conf"),
		ListenAddr: "127.0.0.1", Port: port,
		SuperUser: "postgres", SuperPassword: password, ReplUser: "replicator", ReplPassword: "test-replication",
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer scancel()
		_ = inst.Stop(sctx, postgres.StopImmediate)
	})
	if err := inst.InitDB(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inst.WriteConfig(postgres.Settings{}); err != nil {
		t.Fatal(err)
	}
	if err := inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", password), Host: fmt.Sprintf("127.0.0.1:%d", port), Path: "/postgres", RawQuery: "sslmode=disable&connect_timeout=5"}
	return &Postgres{Inst: inst, DSN: u.String()}
}
