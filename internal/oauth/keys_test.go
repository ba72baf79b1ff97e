package oauth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateKeys(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "secrets", "keys.json")
	ks, err := loadOrCreateKeys(path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys file: %v, %v", st, err)
	}
	info := ks.Info()
	if len(info) != 1 || len(info[0].ID) != 16 || !info[0].Created.Equal(clock.Now()) {
		t.Fatalf("Info = %+v", info)
	}
	var f keyFile
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &f); err != nil || len(f.Keys) != 1 {
		t.Fatalf("file %s: %v", b, err)
	}
	seed, err := base64.StdEncoding.DecodeString(f.Keys[0].PrivateKey)
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("private_key is not a base64 seed: %v", err)
	}
	sum := sha256.Sum256(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	if want := base64.RawURLEncoding.EncodeToString(sum[:])[:16]; f.Keys[0].KID != want || info[0].ID != want {
		t.Fatalf("kid %s, want %s", f.Keys[0].KID, want)
	}
	again, err := LoadOrCreateKeys(path)
	if err != nil || !reflect.DeepEqual(again.Info(), info) {
		t.Fatalf("second load: %+v, %v; want %+v", again.Info(), err, info)
	}
}

func TestKeysFileRefused(t *testing.T) {
	clock := newFakeClock()
	_, path := newTestKeys(t, clock)
	good, _ := os.ReadFile(path)
	var f keyFile
	json.Unmarshal(good, &f)
	other, _ := generateKey(clock.Now())
	write := func(mod func(f *keyFile)) []byte {
		var g keyFile
		json.Unmarshal(good, &g)
		mod(&g)
		b, _ := json.Marshal(g)
		return b
	}
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		is      error
	}{
		{"group readable", good, 0o640, ErrInsecureFile},
		{"world readable", good, 0o604, ErrInsecureFile},
		{"wrong kid", write(func(f *keyFile) { f.Keys[0].KID = other.kid }), 0o600, nil},
		{"seed not base64", write(func(f *keyFile) { f.Keys[0].PrivateKey = "!!" }), 0o600, nil},
		{"short seed", write(func(f *keyFile) { f.Keys[0].PrivateKey = "AAAA" }), 0o600, nil},
		{"listed twice", write(func(f *keyFile) { f.Keys = append(f.Keys, f.Keys[0]) }), 0o600, nil},
		{"no keys", []byte(`{"keys":[]}`), 0o600, nil},
		{"unknown field", []byte(`{"keys":[],"x":1}`), 0o600, nil},
		{"not JSON", []byte(`keys`), 0o600, nil},
	}
	for _, tt := range tests {
		p := filepath.Join(t.TempDir(), "keys.json")
		if err := os.WriteFile(p, tt.content, tt.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, tt.mode)
		_, err := LoadOrCreateKeys(p)
		if err == nil || !strings.Contains(err.Error(), p) || tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: LoadOrCreateKeys = %v; want an error naming %s", tt.name, err, p)
		}
		if b, _ := os.ReadFile(p); string(b) != string(tt.content) {
			t.Errorf("%s: the refused file was rewritten", tt.name)
		}
	}
}

// jwksOf decodes a JWK set.
func jwksOf(t *testing.T, b []byte) []jwk {
	t.Helper()
	var set struct{ Keys []jwk }
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	return set.Keys
}

func TestJWKS(t *testing.T) {
	clock := newFakeClock()
	ks, path := newTestKeys(t, clock)
	clock.Advance(time.Minute)
	if err := ks.Rotate(path); err != nil {
		t.Fatal(err)
	}
	keys := jwksOf(t, ks.JWKS())
	ring := ks.ring.Load()
	if len(keys) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(keys))
	}
	for i, k := range keys {
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != "EdDSA" || k.Use != "sig" || err != nil ||
			!ring.keys[i].pub.Equal(ed25519.PublicKey(x)) || k.Kid != ring.keys[i].kid {
			t.Errorf("keys[%d] = %+v", i, k)
		}
	}
	if keys[0].Kid != ks.Info()[0].ID {
		t.Error("JWKS is not newest first")
	}
	s := newTestServer(t, clock, ServerConfig{Keys: ks, Clients: []Client{}})
	mux := http.NewServeMux()
	s.Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", JWKSPath, nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || !reflect.DeepEqual(jwksOf(t, rec.Body.Bytes()), keys) {
		t.Fatalf("GET %s: %d %s %s", JWKSPath, rec.Code, rec.Header(), rec.Body)
	}
	// JWKS returns a copy.
	b := ks.JWKS()
	b[0] = 'x'
	if ks.JWKS()[0] != '{' {
		t.Fatal("JWKS returned its internal buffer")
	}
}

func TestRotateAndPrune(t *testing.T) {
	clock := newFakeClock()
	ks, path := newTestKeys(t, clock)
	s := newTestServer(t, clock, ServerConfig{Keys: ks, Clients: []Client{testClient("app", "pw", "api/read")}, TTL: 24 * time.Hour})
	oldKid := ks.Info()[0].ID
	before, _, err := s.Issuer().Issue("app", []string{"api/read"})
	if err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Hour)
	if err := ks.Rotate(path); err != nil {
		t.Fatal(err)
	}
	info := ks.Info()
	if len(info) != 2 || info[1].ID != oldKid || info[0].ID == oldKid || !info[0].Created.Equal(clock.Now()) {
		t.Fatalf("after Rotate: %+v", info)
	}
	after, _, err := s.Issuer().Issue("app", []string{"api/read"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(after, ks.ring.Load().keys[0].header+".") {
		t.Fatal("the new key does not sign")
	}
	for name, tok := range map[string]string{"before": before, "after": after} {
		if _, err := s.Issuer().Verify(tok); err != nil {
			t.Errorf("token from %s Rotate: %v", name, err)
		}
	}
	if keys := jwksOf(t, ks.JWKS()); len(keys) != 2 || keys[0].Kid != info[0].ID || keys[1].Kid != oldKid {
		t.Errorf("JWKS after Rotate: %+v", keys)
	}

	// A new server loading the file verifies both.
	ks2, err := loadOrCreateKeys(path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	s2 := newTestServer(t, clock, ServerConfig{Keys: ks2, Clients: []Client{}, TTL: 24 * time.Hour})
	for name, tok := range map[string]string{"before": before, "after": after} {
		if _, err := s2.Issuer().Verify(tok); err != nil {
			t.Errorf("new server, token from %s Rotate: %v", name, err)
		}
	}

	// Retired for 2 h; a 3 h retention keeps the old key.
	clock.Advance(2 * time.Hour)
	if err := ks2.Prune(path, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(ks2.Info()) != 2 {
		t.Fatalf("Prune within retention dropped keys: %+v", ks2.Info())
	}
	if err := ks2.Prune(path, -time.Second); err == nil {
		t.Error("negative retention accepted")
	}
	// A 2 h retention drops it.
	clock.Advance(time.Second)
	if err := ks2.Prune(path, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := ks2.Info(); len(got) != 1 || got[0].ID != info[0].ID {
		t.Fatalf("after Prune: %+v", got)
	}
	if _, err := s2.Issuer().Verify(before); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("token of the pruned key: %v, want ErrUnknownKey", err)
	}
	if _, err := s2.Issuer().Verify(after); err != nil {
		t.Errorf("token of the signing key after Prune: %v", err)
	}
	if keys := jwksOf(t, ks2.JWKS()); len(keys) != 1 {
		t.Errorf("JWKS after Prune: %+v", keys)
	}
	// The first server notices the pruned file within a second.
	clock.Advance(time.Second)
	if rec := bearerRequest(s, before); rec.Code != http.StatusUnauthorized {
		t.Errorf("first server, token of the pruned key: %d", rec.Code)
	}
	// The signing key is never pruned.
	clock.Advance(1000 * time.Hour)
	if err := ks2.Prune(path, 0); err != nil || len(ks2.Info()) != 1 {
		t.Fatalf("Prune of the only key: %+v, %v", ks2.Info(), err)
	}
}

// bearerRequest calls a Require-guarded handler of s with token.
func bearerRequest(s *Server, token string) *httptest.ResponseRecorder {
	h := s.Require()(func(w http.ResponseWriter, _ *http.Request) {})
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h(rec, r)
	return rec
}

func TestRotateKeepsOtherProcessesKeys(t *testing.T) {
	clock := newFakeClock()
	a, path := newTestKeys(t, clock)
	b, err := loadOrCreateKeys(path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if err := a.Rotate(path); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if err := b.Rotate(path); err != nil { // b's memory is stale
		t.Fatal(err)
	}
	c, err := loadOrCreateKeys(path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Info()) != 3 || c.Info()[0].ID != b.Info()[0].ID || c.Info()[1].ID != a.Info()[0].ID {
		t.Fatalf("after two rotations by two processes: %+v", c.Info())
	}
}
