package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/problem"
)

func TestRequire(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, clock, ServerConfig{Clients: testClients})
	iss := s.Issuer()
	mint := func(mod func(i *Issuer), scopes ...string) string {
		i := *iss
		if mod != nil {
			mod(&i)
		}
		tok, _, err := i.Issue("app", scopes)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	read := mint(nil, "api/read")
	write := mint(nil, "api/upsert-delete")
	both := mint(nil, "api/read", "api/upsert-delete")
	none := mint(nil)
	expired := mint(func(i *Issuer) {
		past := clock.Now().Add(-2 * time.Hour)
		i.Now = func() time.Time { return past }
	}, "api/read")
	otherAud := mint(func(i *Issuer) { i.Audience = "other" }, "api/read")
	otherIss := mint(func(i *Issuer) { i.Issuer = "https://other" }, "api/read")
	forged := read[:len(read)-5] + map[bool]string{true: "B", false: "A"}[read[len(read)-5] == 'A'] + read[len(read)-4:]
	foreign, _, _ := newTestIssuer(t, clock).Issue("app", []string{"api/read"})

	const (
		noToken      = `Bearer realm="holdfast"`
		insufficient = `Bearer realm="holdfast", error="insufficient_scope", scope="api/read api/upsert-delete"`
	)
	invalid := func(desc string) string {
		return `Bearer realm="holdfast", error="invalid_token", error_description="` + desc + `"`
	}
	tests := []struct {
		name   string
		auth   string
		scopes []string
		status int
		www    string
	}{
		{"no header", "", []string{"api/read"}, 401, noToken},
		{"Basic", basic("app", "pw-app"), []string{"api/read"}, 401, noToken},
		{"Bearer without token", "Bearer", []string{"api/read"}, 401, noToken},
		{"Bearer, empty token", "Bearer  ", []string{"api/read"}, 401, noToken},
		{"garbage", "Bearer abc", []string{"api/read"}, 401, invalid("malformed token")},
		{"expired", "Bearer " + expired, []string{"api/read"}, 401, invalid("token expired")},
		{"forged", "Bearer " + forged, []string{"api/read"}, 401, invalid("signature does not verify")},
		{"another key set", "Bearer " + foreign, []string{"api/read"}, 401, invalid("unknown signing key")},
		{"wrong audience", "Bearer " + otherAud, []string{"api/read"}, 401, invalid("token for another audience")},
		{"wrong issuer", "Bearer " + otherIss, []string{"api/read"}, 401, invalid("token from another issuer")},
		{"alg none", "Bearer " + craft(t, `{"alg":"none"}`, validClaims(clock), nil), []string{"api/read"}, 401, invalid("signing algorithm not accepted")},
		{"missing scope", "Bearer " + read, []string{"api/upsert-delete"}, 403, `Bearer realm="holdfast", error="insufficient_scope", scope="api/upsert-delete"`},
		{"no scope in token", "Bearer " + none, []string{"api/read", "api/upsert-delete"}, 403, insufficient},
		{"first of two scopes", "Bearer " + read, []string{"api/read", "api/upsert-delete"}, 200, ""},
		{"second of two scopes", "Bearer " + write, []string{"api/read", "api/upsert-delete"}, 200, ""},
		{"both scopes", "Bearer " + both, []string{"api/upsert-delete"}, 200, ""},
		{"bearer scheme in lower case", "bearer " + read, []string{"api/read"}, 200, ""},
		{"no scope required", "Bearer " + none, nil, 200, ""},
	}
	for _, tt := range tests {
		var got Claims
		var reached bool
		h := s.Require(tt.scopes...)(func(w http.ResponseWriter, r *http.Request) {
			reached = true
			var ok bool
			if got, ok = ClaimsFrom(r.Context()); !ok {
				t.Errorf("%s: no claims in the context", tt.name)
			}
			w.WriteHeader(http.StatusOK)
		})
		r := httptest.NewRequest("GET", "/todos", nil)
		if tt.auth != "" {
			r.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		h(rec, r)
		if rec.Code != tt.status || rec.Header().Get("WWW-Authenticate") != tt.www {
			t.Errorf("%s: %d, WWW-Authenticate %q; want %d, %q", tt.name, rec.Code, rec.Header().Get("WWW-Authenticate"), tt.status, tt.www)
			continue
		}
		if tt.status == http.StatusOK {
			if !reached || got.Subject != "app" {
				t.Errorf("%s: claims %+v", tt.name, got)
			}
			continue
		}
		if reached {
			t.Errorf("%s: the handler ran", tt.name)
		}
		var p problem.Details
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != tt.status || p.Field != "Authorization" || p.Detail == "" ||
			rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: body %s", tt.name, rec.Body)
		}
	}
	if _, ok := ClaimsFrom(t.Context()); ok {
		t.Error("ClaimsFrom found claims in a bare context")
	}
}

func TestRequireRefusesBadScopes(t *testing.T) {
	s := newTestServer(t, newFakeClock(), ServerConfig{Clients: testClients})
	for _, sc := range []string{"", "a b", `a"b`, "API"} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "BUG") {
					t.Errorf("Require(%q) did not panic: %v", sc, r)
				}
			}()
			s.Require(sc)
		}()
	}
}

// TestVerifiedCache: a token is verified once, then served from the cache
// until it expires; a cached token past its expiry is refused; a forged
// variant of a cached token is not.
func TestVerifiedCache(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, clock, ServerConfig{Clients: []Client{testClient("c1", "secret-c1", "api/read")}})
	mux := http.NewServeMux()
	s.Register(mux)
	tr := getToken(t, mux, "c1", "secret-c1")
	h := s.Require("api/read")(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	call := func(token string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		h(rec, req)
		return rec.Code
	}
	for range 2 { // verified, then from the cache
		if call(tr.AccessToken) != http.StatusNoContent {
			t.Fatal("a valid token was refused")
		}
	}
	s.verified.mu.Lock()
	n := len(s.verified.m)
	s.verified.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d cached verifications, want 1", n)
	}
	if code := call(tr.AccessToken[:len(tr.AccessToken)-2] + "xx"); code != http.StatusUnauthorized {
		t.Fatalf("forged variant of a cached token: %d", code)
	}
	clock.Advance(DefaultTTL + Leeway + time.Second)
	if code := call(tr.AccessToken); code != http.StatusUnauthorized {
		t.Fatalf("expired cached token: %d", code)
	}
}

func BenchmarkRequireCached(b *testing.B) {
	clock := newFakeClock()
	s := newTestServer(b, clock, ServerConfig{Clients: []Client{testClient("c1", "secret-c1", "api/read")}})
	mux := http.NewServeMux()
	s.Register(mux)
	tr := getToken(b, mux, "c1", "secret-c1")
	h := s.Require("api/read")(func(w http.ResponseWriter, r *http.Request) {})
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	rec := httptest.NewRecorder()
	for b.Loop() {
		h(rec, req)
	}
}
