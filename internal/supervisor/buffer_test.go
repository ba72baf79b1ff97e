package supervisor_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/testutil"
)

// upProcess is `holdfast up` run as its own OS process.
type upProcess struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startUp(t *testing.T, bin, cfgPath string) *upProcess {
	t.Helper()
	p := &upProcess{out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "up", "--config", cfgPath, "--quiet", "--restart-delay", "1s")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	for _, kv := range os.Environ() { // HOLDFAST_* would override the config
		if !strings.HasPrefix(kv, "HOLDFAST_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(90 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("holdfast up output:\n%s", p.out.String())
		}
	})
	testutil.Eventually(t, 3*time.Minute, "holdfast up ready", func() error {
		select {
		case <-p.done:
			t.Fatalf("holdfast up exited:\n%s", p.out.String())
		default:
		}
		if !strings.Contains(p.out.String(), "Press Ctrl-C to stop.") {
			return fmt.Errorf("not up yet")
		}
		return nil
	})
	return p
}

// portsFree waits until nothing listens on the members' ports (the agents
// of a killed `up` get SIGTERM and stop, with their PostgreSQL).
func portsFree(t *testing.T, cfg config.Config) {
	t.Helper()
	testutil.Eventually(t, 90*time.Second, "the old members gone", func() error {
		for _, m := range cfg.Regions[0].Members {
			for _, port := range []int{m.Port, m.MetricsPort} {
				l, err := net.Listen("tcp", net.JoinHostPort(m.Host, fmt.Sprint(port)))
				if err != nil {
					return fmt.Errorf("member %s: %v", m.Name, err)
				}
				l.Close()
			}
		}
		return nil
	})
}

// TestKillUpLosesNoAcknowledgedWrite: `holdfast up` is killed (SIGKILL)
// while clients write through the buffer's HTTP ingest. Started again on
// the same data dir, it commits every write it acknowledged before dying,
// once, through the proxy.
func TestKillUpLosesNoAcknowledgedWrite(t *testing.T) {
	if !testutil.HavePostgres() {
		t.Skip("PostgreSQL 15 is not installed (run scripts/install-deps.sh)")
	}
	bin := testutil.Binary(t)
	cfg := testutil.ClusterConfig(t, "kill")
	cfgPath := filepath.Join(testutil.TempDir(t), "holdfast.yaml")
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, bin, cfgPath)
	base := "http://" + cfg.API.Addr

	var (
		mu    sync.Mutex
		acked []string
	)
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 15 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				g := uuid.NewString()
				body := fmt.Sprintf(`{"kind":"ingest","key":%q,"payload":{"guid":%q}}`, g, g)
				resp, err := client.Post(base+"/v1/writes", "application/json", strings.NewReader(body))
				if err != nil {
					continue // the server is dead: not acknowledged
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					mu.Lock()
					acked = append(acked, g)
					mu.Unlock()
				}
			}
		}()
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.Eventually(t, time.Minute, "writes acknowledged", func() error {
		if n := ackedCount(); n < 500 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	stopLoad()
	wg.Wait()
	total := ackedCount()
	portsFree(t, cfg)

	startUp(t, bin, cfgPath)
	cfg.Resolve()
	app, err := config.ReadCredentials(filepath.Join(cfg.Postgres.SecretsDir, config.AppSecrets))
	if err != nil {
		t.Fatal(err)
	}
	dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword(app.User, app.Password), Host: cfg.Proxy.WriterAddr,
		Path: "/" + app.Database, RawQuery: "sslmode=disable"}).String()
	qctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(qctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	mu.Lock()
	defer mu.Unlock()
	testutil.Eventually(t, 2*time.Minute, "every acknowledged write committed", func() error {
		var missing int
		if err := conn.QueryRow(qctx, "SELECT count(*) FROM unnest($1::uuid[]) AS a(g) WHERE NOT EXISTS (SELECT 1 FROM ingest WHERE guid = a.g)", acked).Scan(&missing); err != nil {
			return err
		}
		if missing != 0 {
			return fmt.Errorf("%d of %d acknowledged writes not committed", missing, total)
		}
		return nil
	})
	// Exactly once: one row and one applied key per write (the ingest
	// table's primary key would refuse a second row; the applied table
	// shows a redelivered write was recognised, not re-run).
	var rows, keys int
	if err := conn.QueryRow(qctx, "SELECT (SELECT count(*) FROM ingest), (SELECT count(*) FROM holdfast_buffer_applied)").Scan(&rows, &keys); err != nil {
		t.Fatal(err)
	}
	if rows != keys || rows < total {
		t.Fatalf("%d rows, %d applied keys, %d acknowledged writes", rows, keys, total)
	}
	t.Logf("%d writes acknowledged before the kill; all committed once after the restart (%d rows: unacknowledged ones may have made it too)", total, rows)
}
