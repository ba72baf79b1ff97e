package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/problem"
)

func TestGuardAndMetrics(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", AdminToken: "s3cret"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.Mux().HandleFunc("GET /admin", s.Guard(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	get := func(path, auth string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+s.Addr()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	tests := []struct {
		auth   string
		status int
	}{
		{"", http.StatusUnauthorized},
		{"Basic czNjcmV0", http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Bearer s3cre", http.StatusForbidden},
		{"Bearer s3cret2", http.StatusForbidden},
		{"Bearer s3cret", http.StatusOK},
	}
	for _, tt := range tests {
		resp, body := get("/admin", tt.auth)
		if resp.StatusCode != tt.status {
			t.Errorf("Authorization %q: %d, want %d", tt.auth, resp.StatusCode, tt.status)
			continue
		}
		if tt.status == http.StatusOK {
			continue
		}
		var p problem.Details
		if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != tt.status || p.Field != "Authorization" ||
			resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("Authorization %q: body %q", tt.auth, body)
		}
		if tt.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without WWW-Authenticate: Bearer")
		}
	}
	if resp, body := get("/metrics", ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d", resp.StatusCode)
	}
	if resp, _ := get("/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
}

func TestGuardWithoutTokenRefusesAll(t *testing.T) {
	s := New(Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := s.Guard(func(w http.ResponseWriter, _ *http.Request) { t.Error("reached the handler") })
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer ")
	h(rec, req)
	req.Header.Set("Authorization", "Bearer x")
	h(rec, req)
	if rec.status != http.StatusForbidden {
		t.Fatalf("status %d", rec.status)
	}
}

type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(s int)           { r.status = s }

func TestEnsureToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets", "token")
	a, err := EnsureToken(path)
	if err != nil || len(a) < 20 {
		t.Fatalf("EnsureToken = %q, %v", a, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	if b, err := EnsureToken(path); err != nil || b != a {
		t.Fatalf("second EnsureToken = %q, %v; want the same token", b, err)
	}
	os.Chmod(path, 0o640)
	if _, err := ReadToken(path); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("group-readable token: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("\n"), 0o600)
	if _, err := ReadToken(path); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty token: %v", err)
	}
}
