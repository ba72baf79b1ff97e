package supervisor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/supervisor"
	"github.com/holdfast/holdfast/internal/testutil"
)

func testConfig(t *testing.T) config.Config { return testutil.ClusterConfig(t, "refuse") }

func openErr(t *testing.T, cfg config.Config) error {
	sup, err := supervisor.New(supervisor.Config{Deployment: cfg, Binary: "/nonexistent"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	err = sup.Open(context.Background())
	_ = sup.Close(context.Background())
	return err
}

func TestOpenRefusesPortInUse(t *testing.T) {
	cfg := testConfig(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Regions[0].Members[1].Port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = openErr(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "member home-b") || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("want a refusal naming member home-b's port, got %v", err)
	}
	if entries, _ := os.ReadDir(cfg.DataDir); len(entries) != 0 {
		t.Fatalf("a refused start wrote %d entries into the data dir", len(entries))
	}
}

func TestOpenRefusesAnotherClustersDataDir(t *testing.T) {
	cfg := testConfig(t)
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "cluster.json"), []byte(`{"cluster":"prod"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := openErr(t, cfg)
	if err == nil || !strings.Contains(err.Error(), `belongs to cluster "prod"`) {
		t.Fatalf("want a refusal naming cluster prod, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "secrets")); err == nil {
		t.Fatal("a refused start created secrets")
	}
}

func TestOpenRefusesForeignNonEmptyDir(t *testing.T) {
	cfg := testConfig(t)
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := openErr(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "not created by holdfast") {
		t.Fatalf("want a refusal, got %v", err)
	}
}
