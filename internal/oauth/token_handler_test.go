package oauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

const weirdSecret = "p@ss w+rd:%/é&=?#"

// testClients are the clients of the token endpoint tests.
var testClients = []Client{
	testClient("app", "pw-app", "api/read", "api/upsert-delete"),
	testClient("reader", "pw-reader", "api/read"),
	testClient("weird", weirdSecret, "api/read"),
}

func TestTokenEndpoint(t *testing.T) {
	clock := newFakeClock()
	s := newTestServer(t, clock, ServerConfig{Clients: testClients})
	mux := http.NewServeMux()
	s.Register(mux)
	cc := "client_credentials"
	tests := []struct {
		name   string
		req    tokenRequest
		status int
		code   string // error code, or "" for success
		sub    string // on success
		scope  string // on success
	}{
		{"form auth, all scopes", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app")}, 200, "", "app", "api/read api/upsert-delete"},
		{"basic auth", tokenRequest{auth: basic("app", "pw-app"), body: form("grant_type", cc)}, 200, "", "app", "api/read api/upsert-delete"},
		{"basic scheme in lower case", tokenRequest{auth: "basic " + strings.TrimPrefix(basic("app", "pw-app"), "Basic "), body: form("grant_type", cc)}, 200, "", "app", "api/read api/upsert-delete"},
		{"basic, form-encoded special characters", tokenRequest{auth: basic("weird", weirdSecret), body: form("grant_type", cc)}, 200, "", "weird", "api/read"},
		{"basic, special characters not form-encoded", tokenRequest{auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("weird:"+weirdSecret)), body: form("grant_type", cc)}, 400, ErrCodeInvalidRequest, "", ""},
		{"basic, plus not encoded becomes a space", tokenRequest{auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("app:pw+app")), body: form("grant_type", cc)}, 401, ErrCodeInvalidClient, "", ""},
		{"form, special characters", tokenRequest{body: form("grant_type", cc, "client_id", "weird", "client_secret", weirdSecret)}, 200, "", "weird", "api/read"},
		{"basic and the same client_id", tokenRequest{auth: basic("app", "pw-app"), body: form("grant_type", cc, "client_id", "app")}, 200, "", "app", "api/read api/upsert-delete"},
		{"scope subset", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app", "scope", "api/upsert-delete")}, 200, "", "app", "api/upsert-delete"},
		{"scope repeated", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app", "scope", "api/read api/read")}, 200, "", "app", "api/read"},
		{"scope empty means all", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app", "scope", "")}, 200, "", "app", "api/read api/upsert-delete"},
		{"scope order kept", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app", "scope", "api/upsert-delete api/read")}, 200, "", "app", "api/upsert-delete api/read"},
		{"scope not allowed to the client", tokenRequest{body: form("grant_type", cc, "client_id", "reader", "client_secret", "pw-reader", "scope", "api/read api/upsert-delete")}, 400, ErrCodeInvalidScope, "", ""},
		{"scope unknown", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app", "scope", "admin")}, 400, ErrCodeInvalidScope, "", ""},
		{"scope with a quote", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app", "scope", `a"b\`)}, 400, ErrCodeInvalidScope, "", ""},
		{"wrong secret, form", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-reader")}, 401, ErrCodeInvalidClient, "", ""},
		{"wrong secret, basic", tokenRequest{auth: basic("app", "nope"), body: form("grant_type", cc)}, 401, ErrCodeInvalidClient, "", ""},
		{"empty secret", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "")}, 401, ErrCodeInvalidClient, "", ""},
		{"unknown client", tokenRequest{body: form("grant_type", cc, "client_id", "ghost", "client_secret", "pw-app")}, 401, ErrCodeInvalidClient, "", ""},
		{"no client authentication", tokenRequest{body: form("grant_type", cc)}, 401, ErrCodeInvalidClient, "", ""},
		{"client_id without secret", tokenRequest{body: form("grant_type", cc, "client_id", "app")}, 401, ErrCodeInvalidClient, "", ""},
		{"Bearer instead of Basic", tokenRequest{auth: "Bearer abc", body: form("grant_type", cc)}, 401, ErrCodeInvalidClient, "", ""},
		{"client_secret without id", tokenRequest{body: form("grant_type", cc, "client_secret", "pw-app")}, 400, ErrCodeInvalidRequest, "", ""},
		{"basic and client_secret", tokenRequest{auth: basic("app", "pw-app"), body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app")}, 400, ErrCodeInvalidRequest, "", ""},
		{"basic and another client_id", tokenRequest{auth: basic("app", "pw-app"), body: form("grant_type", cc, "client_id", "reader")}, 400, ErrCodeInvalidRequest, "", ""},
		{"basic not base64", tokenRequest{auth: "Basic !!!", body: form("grant_type", cc)}, 400, ErrCodeInvalidRequest, "", ""},
		{"basic without colon", tokenRequest{auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("app")), body: form("grant_type", cc)}, 400, ErrCodeInvalidRequest, "", ""},
		{"grant_type missing", tokenRequest{body: form("client_id", "app", "client_secret", "pw-app")}, 400, ErrCodeInvalidRequest, "", ""},
		{"grant_type password", tokenRequest{body: form("grant_type", "password", "client_id", "app", "client_secret", "pw-app")}, 400, ErrCodeUnsupportedGrantType, "", ""},
		{"grant_type authorization_code", tokenRequest{auth: basic("app", "pw-app"), body: form("grant_type", "authorization_code", "code", "x")}, 400, ErrCodeUnsupportedGrantType, "", ""},
		{"parameter repeated", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app") + "&scope=api/read&scope=api/read"}, 400, ErrCodeInvalidRequest, "", ""},
		{"JSON body", tokenRequest{contentType: "application/json", body: `{"grant_type":"client_credentials"}`}, 400, ErrCodeInvalidRequest, "", ""},
		{"form with charset", tokenRequest{contentType: "application/x-www-form-urlencoded; charset=utf-8", body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app")}, 200, "", "app", "api/read api/upsert-delete"},
		{"bad escape", tokenRequest{body: "grant_type=client_credentials&client_id=%zz"}, 400, ErrCodeInvalidRequest, "", ""},
		{"oversized body", tokenRequest{body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app", "pad", strings.Repeat("x", 8<<10))}, 400, ErrCodeInvalidRequest, "", ""},
		{"GET through the mux", tokenRequest{method: "GET"}, 405, "", "", ""},
		{"PUT through the mux", tokenRequest{method: "PUT", body: form("grant_type", cc, "client_id", "app", "client_secret", "pw-app")}, 405, "", "", ""},
	}
	for _, tt := range tests {
		rec := tt.req.do(mux)
		if rec.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.status)
			continue
		}
		if tt.status == http.StatusMethodNotAllowed {
			continue
		}
		h := rec.Header()
		if h.Get("Cache-Control") != "no-store" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("%s: headers %v", tt.name, h)
		}
		if tt.status == http.StatusUnauthorized && h.Get("WWW-Authenticate") != `Basic realm="holdfast"` {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, h.Get("WWW-Authenticate"))
		}
		if tt.code != "" {
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != tt.code || e.Description == "" {
				t.Errorf("%s: body %s, want error %s", tt.name, rec.Body, tt.code)
			}
			if strings.ContainsAny(e.Description, "\"\\") {
				t.Errorf("%s: error_description %q has characters RFC 6749 forbids", tt.name, e.Description)
			}
			continue
		}
		var tr tokenResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || tr.TokenType != "Bearer" || tr.ExpiresIn != 3600 || tr.Scope != tt.scope {
			t.Errorf("%s: response %s, want scope %q", tt.name, rec.Body, tt.scope)
			continue
		}
		c, err := s.Issuer().Verify(tr.AccessToken)
		if err != nil || c.Subject != tt.sub || c.Scope != tt.scope {
			t.Errorf("%s: token claims %+v, %v", tt.name, c, err)
		}
	}
}

func TestTokenEndpointDirectMethodAndHeaders(t *testing.T) {
	s := newTestServer(t, newFakeClock(), ServerConfig{Clients: testClients})
	rec := tokenRequest{method: "GET"}.do(http.HandlerFunc(s.TokenHandler))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" || !strings.Contains(rec.Body.String(), ErrCodeInvalidRequest) {
		t.Errorf("GET to the handler: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	r := httptest.NewRequest("POST", TokenPath, strings.NewReader(form("grant_type", "client_credentials")))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Add("Authorization", basic("app", "pw-app"))
	r.Header.Add("Authorization", basic("reader", "pw-reader"))
	rec = httptest.NewRecorder()
	s.TokenHandler(rec, r)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), ErrCodeInvalidRequest) {
		t.Errorf("two Authorization headers: %d %s", rec.Code, rec.Body)
	}
	// A body of unknown length is cut at 8 KiB too.
	big := form("grant_type", "client_credentials", "client_id", "app", "client_secret", "pw-app", "pad", strings.Repeat("x", 8<<10))
	r = httptest.NewRequest("POST", TokenPath, strings.NewReader(big))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.ContentLength = -1
	rec = httptest.NewRecorder()
	s.TokenHandler(rec, r)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "8 KiB") {
		t.Errorf("oversized body of unknown length: %d %s", rec.Code, rec.Body)
	}
}

func TestTokenEndpointUnknownClientLooksLikeWrongSecret(t *testing.T) {
	s := newTestServer(t, newFakeClock(), ServerConfig{Clients: testClients})
	h := http.HandlerFunc(s.TokenHandler)
	for _, viaBasic := range []bool{false, true} {
		do := func(id, secret string) *httptest.ResponseRecorder {
			if viaBasic {
				return tokenRequest{auth: basic(id, secret), body: form("grant_type", "client_credentials")}.do(h)
			}
			return tokenRequest{body: form("grant_type", "client_credentials", "client_id", id, "client_secret", secret)}.do(h)
		}
		wrong, unknown := do("app", "nope"), do("ghost", "nope")
		if wrong.Code != unknown.Code || wrong.Body.String() != unknown.Body.String() || !reflect.DeepEqual(wrong.Header(), unknown.Header()) {
			t.Errorf("basic=%v: wrong secret %d %v %s; unknown client %d %v %s", viaBasic,
				wrong.Code, wrong.Header(), wrong.Body, unknown.Code, unknown.Header(), unknown.Body)
		}
	}
}
