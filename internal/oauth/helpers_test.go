package oauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand; safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

const (
	testIssuer   = "https://holdfast.test"
	testAudience = "holdfast-api"
)

// newTestKeys makes a keys file in a temporary directory.
func newTestKeys(t testing.TB, clock *fakeClock) (*KeySet, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.json")
	ks, err := loadOrCreateKeys(path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return ks, path
}

// newTestIssuer makes an Issuer with fresh keys.
func newTestIssuer(t testing.TB, clock *fakeClock) *Issuer {
	ks, _ := newTestKeys(t, clock)
	return &Issuer{Keys: ks, Issuer: testIssuer, Audience: testAudience, Now: clock.Now}
}

// newTestServer makes a Server over cfg, filling in keys, iss, aud and clock.
func newTestServer(t testing.TB, clock *fakeClock, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys, _ = newTestKeys(t, clock)
	}
	cfg.Issuer, cfg.Audience, cfg.Now = testIssuer, testAudience, clock.Now
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenRequest is a request to the token endpoint.
type tokenRequest struct {
	method      string // default POST
	contentType string // default form
	auth        string // Authorization header
	body        string
}

// basic makes an Authorization: Basic value the RFC 6749 §2.3.1 way.
func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// form encodes key/value pairs.
func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

// do sends req to h.
func (req tokenRequest) do(h http.Handler) *httptest.ResponseRecorder {
	method := req.method
	if method == "" {
		method = http.MethodPost
	}
	r := httptest.NewRequest(method, TokenPath, strings.NewReader(req.body))
	ct := req.contentType
	if ct == "" {
		ct = "application/x-www-form-urlencoded"
	}
	r.Header.Set("Content-Type", ct)
	if req.auth != "" {
		r.Header.Set("Authorization", req.auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// getToken asks h for a token with form credentials and fails the test
// unless it gets one.
func getToken(t testing.TB, h http.Handler, id, secret string) tokenResponse {
	t.Helper()
	rec := tokenRequest{body: form("grant_type", "client_credentials", "client_id", id, "client_secret", secret)}.do(h)
	if rec.Code != http.StatusOK {
		t.Fatalf("token for %s: %d %s", id, rec.Code, rec.Body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

// testClient builds a client with secret.
func testClient(id, secret string, scopes ...string) Client {
	return Client{ID: id, SecretHash: HashSecret(secret), Scopes: scopes}
}
