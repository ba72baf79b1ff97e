package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestStartEmbeddedBusyPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, which := range []string{"client", "peer"} {
		cfg, err := testEmbedConfig(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		busy := "http://" + l.Addr().String()
		if which == "client" {
			cfg.ClientURL = busy
		} else {
			cfg.PeerURL = busy
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e, err := StartEmbedded(ctx, cfg, testLogger(t))
		cancel()
		if err == nil {
			e.Close()
			t.Fatalf("%s URL %s in use: started anyway", which, busy)
		}
		if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), l.Addr().String()) ||
			!strings.Contains(err.Error(), which+" URL") {
			t.Fatalf("%s URL in use: unclear error: %v", which, err)
		}
		t.Logf("%s: %v", which, err)
	}
}

func TestEmbedConfigValidate(t *testing.T) {
	t.Parallel()
	good := DefaultEmbedConfig()
	good.DataDir = "/tmp/x"
	if err := good.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*EmbedConfig)
		want string
	}{
		{"no data dir", func(c *EmbedConfig) { c.DataDir = "" }, "data dir"},
		{"no name", func(c *EmbedConfig) { c.Name = "" }, "name"},
		{"https", func(c *EmbedConfig) { c.ClientURL = "https://127.0.0.1:1" }, "client URL"},
		{"no port", func(c *EmbedConfig) { c.PeerURL = "http://127.0.0.1" }, "peer URL"},
		{"same ports", func(c *EmbedConfig) { c.PeerURL = c.ClientURL }, "different ports"},
		{"election too short", func(c *EmbedConfig) { c.ElectionTimeout = 4 * c.HeartbeatInterval }, "election timeout"},
		{"heartbeat zero", func(c *EmbedConfig) { c.HeartbeatInterval = 0 }, "heartbeat"},
		{"log level", func(c *EmbedConfig) { c.LogLevel = "loud" }, "log level"},
	}
	for _, c := range cases {
		cfg := good
		c.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := Config{Cluster: "c", Endpoints: []string{"http://127.0.0.1:2379"}}.withDefaults()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if good.RequestTimeout != 2*time.Second || good.DialTimeout != 2*time.Second || good.MaxEvents != 10000 {
		t.Fatalf("defaults: %+v", good)
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no cluster", func(c *Config) { c.Cluster = "" }, "cluster"},
		{"slash in cluster", func(c *Config) { c.Cluster = "a/b" }, "cluster"},
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, "endpoints"},
		{"empty endpoint", func(c *Config) { c.Endpoints = []string{""} }, "endpoints[0]"},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -1 }, "request timeout"},
		{"max events", func(c *Config) { c.MaxEvents = -1 }, "max events"},
	}
	for _, c := range cases {
		cfg := good
		c.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
		}
	}
	if _, err := Open(Config{}, slog.Default()); err == nil {
		t.Fatal("Open with empty config succeeded")
	}
}

// Not parallel: counts the process's goroutines. Parallel tests only start
// once every sequential test has finished.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	beforeStacks := goroutineStacks()
	func() {
		cfg, err := testEmbedConfig(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e, err := StartEmbedded(ctx, cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		s, err := Open(Config{Cluster: "leak", Endpoints: e.Endpoints()}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		id, err := s.GrantLease(ctx, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.KeepAliveOnce(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := s.PutMember(ctx, cluster.Member{Name: "m1"}, id); err != nil {
			t.Fatal(err)
		}
		// Watches whose contexts outlive the Store: Close must end them.
		ch := s.Watch(context.Background(), 0)
		evs := s.WatchEvents(context.Background(), 0)
		if u := nextUpdate(t, ch, 5*time.Second); u.Kind != Resync {
			t.Fatalf("first update %+v", u)
		}
		if err := s.AppendEvent(ctx, cluster.Event{Kind: "k"}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-evs:
		case <-time.After(10 * time.Second):
			t.Fatal("the appended event was not sent within 10 s")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before, %d after Close; new ones:\n%s", before, runtime.NumGoroutine(), newGoroutines(beforeStacks, goroutineStacks()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestZapRecordsReachSlog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	lg := newZapLogger(slog.New(slog.NewTextHandler(&buf, nil)), zapcore.WarnLevel, nil)
	lg.Info("dropped")
	lg.With(zap.String("member", "m1")).Warn("slow apply", zap.Duration("took", time.Second), zap.Int("n", 3))
	got := buf.String()
	if strings.Contains(got, "dropped") {
		t.Fatalf("info record below the level was forwarded: %s", got)
	}
	for _, want := range []string{"level=WARN", `msg="slow apply"`, "member=m1", "took=", "n=3"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in %s", want, got)
		}
	}
}

func ExampleStartEmbedded() {
	ctx := context.Background()
	cfg := DefaultEmbedConfig()
	cfg.DataDir = "/var/lib/holdfast/etcd"
	e, err := StartEmbedded(ctx, cfg, slog.Default())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	s, err := Open(Config{Cluster: "main", Endpoints: e.Endpoints()}, slog.Default())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
}

// goroutineStacks returns the stacks of all goroutines by their header line
// ("goroutine 12"), so that the ones started since a snapshot can be listed.
func goroutineStacks() map[string]string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(g, " [")
		out[id] = g
	}
	return out
}

func newGoroutines(before, after map[string]string) string {
	var b strings.Builder
	for id, g := range after {
		if _, ok := before[id]; !ok {
			b.WriteString(g + "\n\n")
		}
	}
	return b.String()
}
