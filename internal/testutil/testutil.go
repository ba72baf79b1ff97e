// Package testutil holds helpers for tests that run real dependencies: the
// holdfast binary, free ports, directories PostgreSQL may use when tests run
// as root, and a writer that records which commits were acknowledged.
package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/freeport"
)

// FreePort returns a loopback TCP port that was free a moment ago, outside
// the kernel's ephemeral range (see package freeport), and that it has not
// returned before in this process.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TempDir returns a new directory that the postgres OS user can traverse
// (t.TempDir's parent is mode 0700, which PostgreSQL, run as postgres when
// tests run as root, cannot enter). It is removed when the test ends.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "holdfast-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() || os.Getenv("HOLDFAST_KEEP_TEST_DIRS") == "" {
			os.RemoveAll(dir)
		} else {
			t.Logf("kept %s", dir)
		}
	})
	return dir
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds cmd/holdfast once per test process (with the race detector
// when the tests run with it) and returns its path. Tests that need it run
// whole clusters: they are skipped in -short (make test-unit).
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (a cluster of real processes): skipped in -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "holdfast-bin-")
		if err != nil {
			buildErr = err
			return
		}
		_ = os.Chmod(dir, 0o755)
		buildPath = filepath.Join(dir, "holdfast")
		args := []string{"build", "-o", buildPath}
		if RaceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/holdfast")
		cmd := exec.Command("go", args...)
		cmd.Dir = moduleRoot()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// HavePostgres reports whether PostgreSQL 15 server binaries are installed.
func HavePostgres() bool {
	_, err := os.Stat("/usr/lib/postgresql/15/bin/postgres")
	return err == nil
}
