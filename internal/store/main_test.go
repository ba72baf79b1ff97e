package store

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/freeport"
)

// One embedded etcd serves the whole package; each test uses its own cluster
// name, so tests are isolated by key prefix and can run in parallel. Tests that
// stop etcd start their own.
var testEndpoints []string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "holdfast-store-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := testEmbedConfig(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e, err := StartEmbedded(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer e.Close()
	testEndpoints = e.Endpoints()
	// etcd starts its gRPC and HTTP handlers just after it reports ready; one
	// request makes sure they run before any test counts goroutines.
	if err := ping(ctx, testEndpoints); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// freePort returns a loopback port that was free a moment ago (see
// package freeport).
func freePort(t testing.TB) int {
	if t != nil {
		t.Helper()
	}
	p, err := freeport.Pick()
	if err != nil {
		panic(err)
	}
	return p
}

func testEmbedConfig(dir string) (EmbedConfig, error) {
	cfg := DefaultEmbedConfig()
	cfg.Name = "test"
	cfg.DataDir = dir
	cfg.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(nil))
	cfg.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(nil))
	cfg.NoFsync = true
	return cfg, cfg.Validate()
}

// startEtcd starts an etcd of the test's own, closed at cleanup.
func startEtcd(t *testing.T, cfg EmbedConfig) *Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

var clusterSeq atomic.Int64

// newStore opens a Store on the shared etcd under a cluster name unique to the test.
func newStore(t *testing.T) *Store {
	t.Helper()
	return openStore(t, Config{Endpoints: testEndpoints})
}

func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.Cluster == "" {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
		cfg.Cluster = fmt.Sprintf("%s-%d", name, clusterSeq.Add(1))
	}
	s, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes (never a fixed sleep).
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nextUpdate receives one update or fails the test.
func nextUpdate(t *testing.T, ch <-chan Update, timeout time.Duration) Update {
	t.Helper()
	select {
	case u, ok := <-ch:
		if !ok {
			t.Fatal("update channel closed")
		}
		return u
	case <-time.After(timeout):
		t.Fatalf("no update within %s", timeout)
	}
	return Update{}
}

// waitUpdate skips updates until one of kind arrives.
func waitUpdate(t *testing.T, ch <-chan Update, kind UpdateKind, timeout time.Duration) Update {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %s update within %s", kind, timeout)
		}
		u := nextUpdate(t, ch, left)
		if u.Kind == kind {
			return u
		}
	}
}

func ping(ctx context.Context, endpoints []string) error {
	s, err := Open(Config{Cluster: "ping", Endpoints: endpoints}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.Members(ctx)
	return err
}
