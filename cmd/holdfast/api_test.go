package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/oauth"
)

func TestAPIClientCreateAndKeysRotate(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "holdfast.yaml")
	clients, keys := filepath.Join(dir, "clients.yaml"), filepath.Join(dir, "keys.json")
	if err := os.WriteFile(cfg, []byte("cluster: prod\napi:\n  clients_file: "+clients+"\n  keys_file: "+keys+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("api", "client", "create", "reporting", "--scope", "api/read", "--json", "--config", cfg)
	if code != exitOK {
		t.Fatalf("client create: %d %q", code, errs)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil || got["client_id"] != "reporting" || got["client_secret"] == "" {
		t.Fatalf("client create --json: %s", out)
	}
	stored, err := oauth.LoadClients(clients)
	if err != nil || len(stored) != 1 || !stored[0].CheckSecret(got["client_secret"].(string)) || strings.Contains(mustRead(t, clients), got["client_secret"].(string)) {
		t.Fatalf("stored clients %+v (%v): want the hash of the printed secret, not the secret", stored, err)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"api", "client", "create", "reporting", "--scope", "api/read", "--config", cfg}, exitFailed, "exists"},
		{[]string{"api", "client", "create", "nobody", "--config", cfg}, exitInvalid, "--scope is required"},
		{[]string{"api", "client", "create", "--scope", "api/read", "--config", cfg}, exitInvalid, "exactly one client NAME"},
		{[]string{"api", "client", "create", "bad name!", "--scope", "api/read", "--config", cfg}, exitFailed, ""},
		{[]string{"api", "keys", "rotate", "--keep", "1m", "--config", cfg}, exitInvalid, "shorter than api.token_ttl"},
	} {
		code, out, errs := runCLI(tt.args...)
		if code != tt.code || !strings.Contains(out+errs, tt.want) {
			t.Errorf("holdfast %v = %d %q %q", tt.args, code, out, errs)
		}
	}
	// Two rotations: three keys, the newest signing.
	for range 2 {
		if code, _, errs := runCLI("api", "keys", "rotate", "--config", cfg); code != exitOK {
			t.Fatalf("keys rotate: %d %q", code, errs)
		}
	}
	code, out, _ = runCLI("api", "keys", "rotate", "--json", "--config", cfg)
	var k struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &k) != nil || len(k.Keys) != 4 || k.Keys[0].Kid == "" {
		t.Fatalf("keys rotate --json: %d %s", code, out)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
