package oauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func FuzzVerify(f *testing.F) {
	clock := newFakeClock()
	iss := newTestIssuer(f, clock)
	issued := map[string]bool{}
	var seeds []string
	for _, scopes := range [][]string{{"api/read"}, {"api/read", "api/upsert-delete"}, nil} {
		tok, _, err := iss.Issue("app", scopes)
		if err != nil {
			f.Fatal(err)
		}
		issued[tok] = true
		seeds = append(seeds, tok)
	}
	k := iss.Keys.ring.Load().keys[0]
	tok := seeds[0]
	parts := strings.Split(tok, ".")
	seeds = append(seeds,
		"", ".", "..", "a.b.c", tok+".", tok+"A", tok[:len(tok)-1],
		parts[0]+"."+parts[1]+".",
		parts[0]+".."+parts[2],
		strings.ToUpper(tok),
		strings.Replace(tok, ".", "..", 1),
		craft(f, `{"alg":"none","typ":"JWT","kid":"`+k.kid+`"}`, validClaims(clock), nil),
		craft(f, `{"alg":"HS256","typ":"JWT","kid":"`+k.kid+`"}`, validClaims(clock), func(b []byte) []byte { return b[:32] }),
		craft(f, `{"alg":"EdDSA","typ":"JWT","kid":"`+k.kid+`","x":1}`, validClaims(clock), signWith(k)),
		strings.Repeat("A", MaxTokenSize+1),
	)
	for i := range tok {
		if i%17 == 0 {
			b := []byte(tok)
			b[i] ^= 1
			seeds = append(seeds, string(b))
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := iss.Verify(token)
		if err == nil {
			if !issued[token] {
				t.Fatalf("accepted a token the key set did not issue: %q (%+v)", token, c)
			}
			return
		}
		if !errors.Is(err, ErrInvalidToken) || c != (Claims{}) {
			t.Fatalf("Verify(%q) = %+v, %v; want no claims and ErrInvalidToken", token, c, err)
		}
		if d := describe(err); strings.ContainsAny(d, "\"\\\r\n") {
			t.Fatalf("description %q cannot go in WWW-Authenticate", d)
		}
	})
}

func FuzzTokenRequest(f *testing.F) {
	clock := newFakeClock()
	s := newTestServer(f, clock, ServerConfig{Clients: testClients})
	secrets := map[string]string{"app": "pw-app", "reader": "pw-reader", "weird": weirdSecret}
	cc := "client_credentials"
	f.Add(form("grant_type", cc, "client_id", "app", "client_secret", "pw-app"), "")
	f.Add(form("grant_type", cc, "client_id", "app", "client_secret", "pw-app", "scope", "api/read"), "")
	f.Add(form("grant_type", cc, "client_id", "app", "client_secret", "pw-ap"), "")
	f.Add(form("grant_type", cc, "scope", "api/upsert-delete"), basic("app", "pw-app"))
	f.Add(form("grant_type", cc), basic("weird", weirdSecret))
	f.Add(form("grant_type", cc), "Basic "+base64.StdEncoding.EncodeToString([]byte("weird:"+weirdSecret)))
	f.Add(form("grant_type", cc), basic("app", "pw-reader"))
	f.Add(form("grant_type", cc, "client_id", "app"), basic("app", "pw-app"))
	f.Add("grant_type=client_credentials&client_id=app&client_secret=pw-app&client_secret=pw-app", "")
	f.Add("%zz", "Basic !!")
	f.Add("", "Bearer x")
	f.Add(strings.Repeat("a=b&", 3000), "")
	f.Fuzz(func(t *testing.T, body, auth string) {
		r := httptest.NewRequest("POST", TokenPath, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		rec := httptest.NewRecorder()
		s.TokenHandler(rec, r)
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			return
		}
		tr := tokenResponseOf(t, rec)
		c, err := s.Issuer().Verify(tr.AccessToken)
		if err != nil {
			t.Fatalf("issued token does not verify: %v", err)
		}
		want, ok := secrets[c.Subject]
		if !ok {
			t.Fatalf("token for unknown client %q", c.Subject)
		}
		// The oracle: the request carried the right secret, by one of the
		// two means.
		formSecret := ""
		if v, err := url.ParseQuery(body); err == nil {
			formSecret = v.Get("client_secret")
		}
		basicSecret := ""
		if scheme, rest, _ := strings.Cut(auth, " "); strings.EqualFold(scheme, "Basic") {
			if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest)); err == nil {
				if _, sec, ok := strings.Cut(string(raw), ":"); ok {
					basicSecret, _ = url.QueryUnescape(sec)
				}
			}
		}
		if formSecret != want && basicSecret != want {
			t.Fatalf("token for %s without its secret: body %q, Authorization %q", c.Subject, body, auth)
		}
	})
}

// tokenResponseOf decodes a successful token response.
func tokenResponseOf(t *testing.T, rec *httptest.ResponseRecorder) tokenResponse {
	t.Helper()
	var tr tokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("200 with body %s: %v", rec.Body, err)
	}
	return tr
}
