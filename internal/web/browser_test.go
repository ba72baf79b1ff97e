package web_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/supervisor"
	"github.com/holdfast/holdfast/internal/testutil"
)

// syncBuffer collects the supervisor's output for a failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDashboardInBrowser drives the dashboard of a real `holdfast up` in
// headless chromium (ui/e2e/dashboard.mjs): every region's health flag and
// every member's timeline and lag, load on the buffer path, a
// kill-primary drill from the page, the promotion on the timeline and a
// report with nothing lost, duplicated or refused. With
// UPDATE_DASHBOARD_PNG=1 its screenshot replaces docs/img/dashboard.png.
func TestDashboardInBrowser(t *testing.T) {
	if !testutil.HavePostgres() {
		t.Skip("PostgreSQL 15 is not installed (run scripts/install-deps.sh)")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat("ui/node_modules/playwright-core"); err != nil {
		t.Skip("the browser test's packages are not installed (make ui-deps)")
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium is not installed (make ui-deps)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (make ui-deps)")
	}
	bin := testutil.Binary(t)
	cfg := testutil.ClusterConfig(t, "ui")
	out := &syncBuffer{}
	sup, err := supervisor.New(supervisor.Config{Deployment: cfg, Binary: bin, Out: out, RestartDelay: 2 * time.Second}, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sup.Open(ctx); err != nil {
		t.Fatalf("open: %v\n%s", err, out.String())
	}
	defer func() { _ = sup.Close(context.Background()) }()

	shot := filepath.Join(testutil.TempDir(t), "dashboard.png")
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer rcancel()
	cmd := exec.CommandContext(rctx, node, "e2e/dashboard.mjs", "--url", sup.DashboardURL(), "--screenshot", shot)
	cmd.Dir = "ui"
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	res, err := cmd.CombinedOutput()
	t.Logf("%s", res)
	if err != nil {
		t.Fatalf("browser test: %v\nsupervisor output:\n%s", err, out.String())
	}
	if os.Getenv("UPDATE_DASHBOARD_PNG") != "" {
		b, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/img/dashboard.png", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
