package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServerReloadsClientsFile(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "clients.yaml")
	appSecret, err := CreateClient(path, "app", []string{"api/read"})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, clock, ServerConfig{ClientsFile: path})
	h := http.HandlerFunc(s.TokenHandler)
	getToken(t, h, "app", appSecret)
	ask := func(id, secret string) int {
		return tokenRequest{body: form("grant_type", "client_credentials", "client_id", id, "client_secret", secret)}.do(h).Code
	}

	// Another process adds a client: seen after at most a second.
	lateSecret, err := CreateClient(path, "late", []string{"api/read", "api/upsert-delete"})
	if err != nil {
		t.Fatal(err)
	}
	if code := ask("late", lateSecret); code != http.StatusUnauthorized {
		t.Fatalf("new client before the next check: %d", code)
	}
	clock.Advance(time.Second)
	if tr := getToken(t, h, "late", lateSecret); tr.Scope != "api/read api/upsert-delete" {
		t.Fatalf("new client's scope %q", tr.Scope)
	}

	// A broken file leaves the clients in force.
	if err := os.WriteFile(path, []byte("clients: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	getToken(t, h, "late", lateSecret)
	// So does a file others may read.
	if err := SaveClients(path, []Client{testClient("third", "pw3", "api/read")}); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	clock.Advance(time.Second)
	if code := ask("third", "pw3"); code != http.StatusUnauthorized {
		t.Fatalf("client of a 0644 file: %d", code)
	}
	getToken(t, h, "app", appSecret)
	// Fixed, it is read again.
	os.Chmod(path, 0o600)
	os.Chtimes(path, time.Now(), time.Now().Add(time.Minute)) // chmod alone does not change mtime
	clock.Advance(time.Second)
	getToken(t, h, "third", "pw3")
	if code := ask("app", appSecret); code != http.StatusUnauthorized {
		t.Fatalf("removed client: %d", code)
	}

	// A removed file means no clients.
	os.Remove(path)
	clock.Advance(time.Second)
	if code := ask("third", "pw3"); code != http.StatusUnauthorized {
		t.Fatalf("client of a removed file: %d", code)
	}
}

func TestServerWithoutClientsFile(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "clients.yaml")
	s := newTestServer(t, clock, ServerConfig{ClientsFile: path})
	h := http.HandlerFunc(s.TokenHandler)
	secret, err := CreateClient(path, "app", []string{"api/read"})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	getToken(t, h, "app", secret)
}

func TestServerReloadsKeysFile(t *testing.T) {
	clock := newFakeClock()
	ks, path := newTestKeys(t, clock)
	s := newTestServer(t, clock, ServerConfig{Keys: ks, Clients: testClients})
	mux := http.NewServeMux()
	s.Register(mux)
	guarded := s.Require("api/read")(func(w http.ResponseWriter, _ *http.Request) {})
	bearerCode := func(token string) int {
		r := httptest.NewRequest("GET", "/x", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		guarded(rec, r)
		return rec.Code
	}
	jwksKeys := func() int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", JWKSPath, nil))
		return len(jwksOf(t, rec.Body.Bytes()))
	}
	old := getToken(t, mux, "app", "pw-app").AccessToken
	oldKid := ks.Info()[0].ID

	// The CLI, another process, rotates.
	cli, err := LoadOrCreateKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Rotate(path); err != nil {
		t.Fatal(err)
	}
	newKid := cli.Info()[0].ID
	clock.Advance(time.Second)
	fresh := getToken(t, mux, "app", "pw-app").AccessToken
	if ks.Info()[0].ID != newKid || !strings.HasPrefix(fresh, cli.ring.Load().keys[0].header+".") {
		t.Fatalf("the server does not sign with the rotated key: %+v", ks.Info())
	}
	if jwksKeys() != 2 {
		t.Fatal("JWKS does not list both keys")
	}
	for name, tok := range map[string]string{"old": old, "fresh": fresh} {
		if code := bearerCode(tok); code != http.StatusOK {
			t.Errorf("%s token after the rotation: %d", name, code)
		}
	}

	// A broken keys file leaves the keys in force.
	good, _ := os.ReadFile(path)
	os.WriteFile(path, []byte("{"), 0o600)
	clock.Advance(time.Second)
	if code := bearerCode(old); code != http.StatusOK {
		t.Errorf("old token with a broken keys file: %d", code)
	}
	if got := ks.Info(); len(got) != 2 || got[1].ID != oldKid {
		t.Errorf("keys after a broken file: %+v", got)
	}

	// Fixed and pruned by the CLI: the old key goes.
	os.WriteFile(path, good, 0o600)
	if err := cli.Prune(path, 0); err != nil {
		t.Fatal(err)
	}
	if len(cli.Info()) != 1 {
		t.Fatalf("Prune(0) kept %+v", cli.Info())
	}
	clock.Advance(time.Second)
	if code := bearerCode(old); code != http.StatusUnauthorized {
		t.Errorf("token of the pruned key: %d", code)
	}
	if code := bearerCode(fresh); code != http.StatusOK {
		t.Errorf("token of the signing key: %d", code)
	}
	if jwksKeys() != 1 {
		t.Error("JWKS lists the pruned key")
	}
}

func TestNewServerValidates(t *testing.T) {
	clock := newFakeClock()
	ks, _ := newTestKeys(t, clock)
	open := filepath.Join(t.TempDir(), "clients.yaml")
	if err := SaveClients(open, testClients); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o644)
	good := ServerConfig{Clients: testClients, Keys: ks, Issuer: testIssuer, Audience: testAudience}
	tests := []struct {
		name string
		mod  func(c *ServerConfig)
		is   error
	}{
		{"both clients sources", func(c *ServerConfig) { c.ClientsFile = "x" }, nil},
		{"no clients source", func(c *ServerConfig) { c.Clients = nil }, nil},
		{"no keys", func(c *ServerConfig) { c.Keys = nil }, nil},
		{"empty keys", func(c *ServerConfig) { c.Keys = &KeySet{} }, nil},
		{"no issuer", func(c *ServerConfig) { c.Issuer = "" }, nil},
		{"no audience", func(c *ServerConfig) { c.Audience = "" }, nil},
		{"negative TTL", func(c *ServerConfig) { c.TTL = -time.Hour }, nil},
		{"TTL under a second", func(c *ServerConfig) { c.TTL = time.Millisecond }, nil},
		{"invalid client", func(c *ServerConfig) { c.Clients = []Client{{ID: "a b"}} }, nil},
		{"duplicate client", func(c *ServerConfig) { c.Clients = []Client{testClients[0], testClients[0]} }, nil},
		{"clients file others may read", func(c *ServerConfig) { c.Clients, c.ClientsFile = nil, open }, ErrInsecureFile},
	}
	for _, tt := range tests {
		cfg := good
		tt.mod(&cfg)
		_, err := NewServer(cfg)
		if err == nil || tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: NewServer = %v", tt.name, err)
		}
	}
	if _, err := NewServer(good); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentUseDuringRotation runs token requests and verifications
// while keys rotate and the clients file changes, for the race detector.
func TestConcurrentUseDuringRotation(t *testing.T) {
	clock := newFakeClock()
	ks, keysPath := newTestKeys(t, clock)
	clientsPath := filepath.Join(t.TempDir(), "clients.yaml")
	secret, err := CreateClient(clientsPath, "app", []string{"api/read"})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, clock, ServerConfig{Keys: ks, ClientsFile: clientsPath})
	mux := http.NewServeMux()
	s.Register(mux)
	guarded := s.Require("api/read")(func(w http.ResponseWriter, _ *http.Request) {})
	cli, err := LoadOrCreateKeys(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var err error
			defer func() { errs <- err }()
			for {
				select {
				case <-done:
					return
				default:
				}
				rec := tokenRequest{body: form("grant_type", "client_credentials", "client_id", "app", "client_secret", secret)}.do(mux)
				var tr tokenResponse
				if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &tr) != nil {
					err = errors.New("token request: " + rec.Body.String())
					return
				}
				r := httptest.NewRequest("GET", "/x", nil)
				r.Header.Set("Authorization", "Bearer "+tr.AccessToken)
				w := httptest.NewRecorder()
				guarded(w, r)
				if w.Code != http.StatusOK {
					err = errors.New("fresh token refused: " + w.Header().Get("WWW-Authenticate"))
					return
				}
			}
		}()
	}
	for i := range 20 {
		if err := cli.Rotate(keysPath); err != nil {
			t.Fatal(err)
		}
		if _, err := CreateClient(clientsPath, "c"+string(rune('a'+i)), []string{"api/read"}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
