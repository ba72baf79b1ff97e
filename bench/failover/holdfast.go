package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/freeport"
	"github.com/holdfast/holdfast/internal/supervisor"
)

// holdfastTarget runs `holdfast up`'s supervisor in-process with the default
// failover settings (lease TTL 2s), agents as separate processes.
type holdfastTarget struct {
	dir string
	cfg config.Config
	sup *supervisor.Supervisor
	app config.Credentials
}

func (h *holdfastTarget) Name() string { return "holdfast" }

var binary string

func buildHoldfast() (string, error) {
	if binary != "" {
		return binary, nil
	}
	dir, err := os.MkdirTemp("", "holdfast-bench-bin-")
	if err != nil {
		return "", err
	}
	_ = os.Chmod(dir, 0o755)
	out := filepath.Join(dir, "holdfast")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/holdfast")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build holdfast (run from the repository root): %w", err)
	}
	binary = out
	return out, nil
}

// freePort returns a free loopback port (see package freeport).
func freePort() int {
	p, err := freeport.Pick()
	if err != nil {
		panic(err)
	}
	return p
}

func (h *holdfastTarget) Start(ctx context.Context) error {
	bin, err := buildHoldfast()
	if err != nil {
		return err
	}
	h.dir, err = os.MkdirTemp("", "holdfast-bench-")
	if err != nil {
		return err
	}
	_ = os.Chmod(h.dir, 0o755)
	cfg := config.Default()
	cfg.PrimaryRegionOnly()
	cfg.Cluster = "bench"
	cfg.DataDir = h.dir
	c, p := freePort(), freePort()
	cfg.Etcd.ClientURL, cfg.Etcd.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", c), fmt.Sprintf("http://127.0.0.1:%d", p)
	cfg.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", c)}
	cfg.Proxy.Enabled = false
	for i := range cfg.Regions[0].Members {
		cfg.Regions[0].Members[i].Port = freePort()
		cfg.Regions[0].Members[i].MetricsPort = freePort()
	}
	// The killed node stays down for the whole measurement (no "reboot").
	h.sup, err = supervisor.New(supervisor.Config{Deployment: cfg, Binary: bin, RestartDelay: time.Minute, QuietEvents: true},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	if err := h.sup.Open(ctx); err != nil {
		return err
	}
	cfg.Resolve()
	h.cfg = cfg
	if _, _, h.app, err = cfg.EnsureSecrets(); err != nil {
		return err
	}
	idx, _, _, err := h.Primary(ctx)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, h.DSNs()[idx])
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE TABLE bench (id bigint PRIMARY KEY)")
	return err
}

func (h *holdfastTarget) DSNs() []string {
	var out []string
	for _, m := range h.cfg.Regions[0].Members {
		out = append(out, fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s connect_timeout=1", m.Host, m.Port, h.app.User, h.app.Password, h.app.Database))
	}
	return out
}

func (h *holdfastTarget) Primary(ctx context.Context) (int, int, int, error) {
	s, err := admin.Status(ctx, h.sup.Store(), h.cfg)
	if err != nil {
		return 0, 0, 0, err
	}
	for i, m := range s.Members {
		if m.Role == cluster.RolePrimary && m.Leader {
			return i, m.PID, m.AgentPID, nil
		}
	}
	return 0, 0, 0, fmt.Errorf("no primary")
}

func (h *holdfastTarget) Switchover(ctx context.Context) error {
	_, err := admin.Switchover(ctx, h.sup.Store(), h.cfg, "", func(string) {})
	return err
}

func (h *holdfastTarget) Stop() {
	_ = h.sup.Close(context.Background())
	os.RemoveAll(h.dir)
}
