package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/problem"
)

// adminServer is the api server with its real token guard in front of
// canned buffer administration answers; it records the requests.
type adminServer struct {
	mu       sync.Mutex
	requests []string // guarded by mu
}

func (a *adminServer) record(r *http.Request, body string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+body))
}

func startAdminServer(t *testing.T) (*adminServer, string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	token, err := api.EnsureToken(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Config{Addr: "127.0.0.1:0", AdminToken: token}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a := &adminServer{}
	answer := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			a.record(r, string(b))
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
		}
	}
	mux := srv.Mux()
	mux.HandleFunc("GET /v1/buffer/status", srv.Guard(answer(`{"pending":12,"oldest_pending_seconds":3.5,"committed_per_second":1843.2,"dead":1,`+
		`"accepted":100,"committed":87,"duplicates":2,"transient_retries":40,"dead_lettered":1,"stream":"HOLDFAST_WRITES",`+
		`"stream_batches":3,"stream_bytes":4096,"nats":"nats://127.0.0.1:4222","max_attempts":25}`)))
	mux.HandleFunc("GET /v1/dlq", srv.Guard(answer(`{"writes":[{"key":"order-7","kind":"ingest","attempts":25,"last_error":"ERROR: new row violates check constraint\n(SQLSTATE 23514)",`+
		`"accepted_at":"2026-11-23T10:00:00Z","dead_at":"2026-11-23T10:02:00Z","payload":{"guid":"x"}}]}`)))
	mux.HandleFunc("POST /v1/dlq/redrive", srv.Guard(answer(`{"redriven":["order-7"],"already_redriven":[]}`)))
	mux.HandleFunc("DELETE /v1/dlq/{key...}", srv.Guard(func(w http.ResponseWriter, r *http.Request) {
		a.record(r, "")
		if r.PathValue("key") != "order/7" {
			problem.Write(w, http.StatusNotFound, "key", fmt.Sprintf("no dead-lettered write with key %q", r.PathValue("key")))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"dropped":"order/7"}`))
	}))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(t.Context()) })
	cfg := filepath.Join(dir, "holdfast.yaml")
	yaml := fmt.Sprintf("cluster: prod\napi:\n  addr: %q\n  admin_token_file: %q\n", srv.Addr(), tokenFile)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return a, cfg
}

func TestBufferAndDLQCommands(t *testing.T) {
	a, cfg := startAdminServer(t)
	tests := []struct {
		args    []string
		code    int
		want    []string
		request string
	}{
		{[]string{"buffer", "status"}, exitOK, []string{"Pending:      12 writes (oldest 3.5s)", "Committing:   1843.2 writes/s", "Dead letters: 1",
			"87 committed, 2 duplicates skipped, 40 transient retries"}, "GET /v1/buffer/status"},
		{[]string{"buffer", "status", "--json"}, exitOK, []string{"\n  \"pending\": 12,\n"}, "GET /v1/buffer/status"},
		{[]string{"dlq", "list"}, exitOK, []string{"KEY", "order-7", "ingest", "25", "new row violates check constraint (SQLSTATE 23514)"}, "GET /v1/dlq?limit=0"},
		{[]string{"dlq", "list", "--json", "--limit", "5"}, exitOK, []string{`"key": "order-7"`}, "GET /v1/dlq?limit=5"},
		{[]string{"dlq", "redrive", "--key", "order-7"}, exitOK, []string{"Redriven: 1"}, `POST /v1/dlq/redrive {"key":"order-7"}`},
		{[]string{"dlq", "redrive", "--all"}, exitOK, []string{"Redriven: 1"}, `POST /v1/dlq/redrive {"all":true}`},
		{[]string{"dlq", "drop", "--key", "order/7"}, exitOK, []string{`Dropped "order/7"`}, "DELETE /v1/dlq/order%2F7"},
		{[]string{"dlq", "drop", "--key", "nope", "--json"}, exitFailed, []string{`no dead-lettered write with key "nope"`}, "DELETE /v1/dlq/nope"},
		// Usage errors send nothing.
		{[]string{"dlq", "redrive"}, exitInvalid, []string{"--key K or --all"}, ""},
		{[]string{"dlq", "redrive", "--key", "k", "--all"}, exitInvalid, []string{"--key K or --all"}, ""},
		{[]string{"dlq", "drop"}, exitInvalid, []string{"--key is required"}, ""},
		{[]string{"dlq", "purge"}, exitInvalid, []string{`unknown subcommand "purge"`}, ""},
		{[]string{"buffer"}, exitInvalid, []string{"Usage: holdfast buffer status"}, ""},
	}
	for _, tt := range tests {
		a.mu.Lock()
		a.requests = nil
		a.mu.Unlock()
		args := append(append([]string{}, tt.args...), "--config", cfg)
		if tt.code == exitInvalid {
			args = tt.args
		}
		code, out, errs := runCLI(args...)
		if code != tt.code {
			t.Errorf("holdfast %v = %d (%q, %q), want %d", tt.args, code, out, errs, tt.code)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out+errs, w) {
				t.Errorf("holdfast %v: output lacks %q:\n%s%s", tt.args, w, out, errs)
			}
		}
		a.mu.Lock()
		got := strings.Join(a.requests, "; ")
		a.mu.Unlock()
		if got != tt.request {
			t.Errorf("holdfast %v sent %q, want %q", tt.args, got, tt.request)
		}
	}
	// --json output is the server's document.
	_, out, _ := runCLI("buffer", "status", "--json", "--config", cfg)
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil || st["committed_per_second"] != 1843.2 {
		t.Errorf("buffer status --json: %v %v", st, err)
	}
}

func TestBufferCommandsNeedTheToken(t *testing.T) {
	_, cfg := startAdminServer(t)
	tokenFile := filepath.Join(filepath.Dir(cfg), "token")

	// A wrong token is refused by the server (403), with the reason.
	if err := os.WriteFile(tokenFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("buffer", "status", "--config", cfg)
	if code != exitFailed || !strings.Contains(errs, "Forbidden: wrong admin token") {
		t.Fatalf("wrong token: %d %q", code, errs)
	}
	// A token file others can read is refused before anything is sent.
	if err := os.Chmod(tokenFile, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI("dlq", "list", "--config", cfg)
	if code != exitFailed || !strings.Contains(errs, "must be 0600") {
		t.Fatalf("readable token file: %d %q", code, errs)
	}
	// No token file: say which setting names it.
	os.Remove(tokenFile)
	code, _, errs = runCLI("dlq", "list", "--config", cfg)
	if code != exitFailed || !strings.Contains(errs, "api.admin_token_file") {
		t.Fatalf("missing token file: %d %q", code, errs)
	}
}
