package oauth

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// craft builds a compact JWS from a header and claims (each a JSON string
// or a value to marshal), signed by sign (nil: empty signature).
func craft(t testing.TB, header, claims any, sign func(input []byte) []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, ok := v.(string)
		if !ok {
			raw, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			b = string(raw)
		}
		return base64.RawURLEncoding.EncodeToString([]byte(b))
	}
	input := enc(header) + "." + enc(claims)
	sig := ""
	if sign != nil {
		sig = base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
	}
	return input + "." + sig
}

// signWith signs with k, as Issue does.
func signWith(k *signingKey) func([]byte) []byte {
	return func(input []byte) []byte { return ed25519.Sign(k.priv, input) }
}

// validClaims are the claims of a token valid at clock's time.
func validClaims(clock *fakeClock) Claims {
	now := clock.Now().Unix()
	return Claims{Issuer: testIssuer, Audience: testAudience, Subject: "app", Scope: "api/read", IssuedAt: now, NotBefore: now, ExpiresAt: now + 3600, ID: "x"}
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	clock := newFakeClock()
	iss := newTestIssuer(t, clock)
	token, exp, err := iss.Issue("app", []string{"api/read", "api/upsert-delete"})
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.Now().Add(time.Hour).Truncate(time.Second); !exp.Equal(want) {
		t.Errorf("expiresAt %v, want %v", exp, want)
	}
	c, err := iss.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Now().Unix()
	if c.Issuer != testIssuer || c.Audience != testAudience || c.Subject != "app" || c.Scope != "api/read api/upsert-delete" ||
		c.IssuedAt != now || c.NotBefore != now || c.ExpiresAt != now+3600 || len(c.ID) != 22 {
		t.Errorf("claims %+v", c)
	}
	if !reflect.DeepEqual(c.Scopes(), []string{"api/read", "api/upsert-delete"}) || !c.HasScope("api/read") || c.HasScope("api") || c.HasScope("") {
		t.Errorf("Scopes %v", c.Scopes())
	}
	parts := strings.Split(token, ".")
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	kid := iss.Keys.Info()[0].ID
	if want := `{"alg":"EdDSA","typ":"JWT","kid":"` + kid + `"}`; string(header) != want {
		t.Errorf("header %s, want %s", header, want)
	}
	other, _, _ := iss.Issue("app", nil)
	if other == token {
		t.Error("two tokens are equal (jti not random)")
	}
	if c, err := iss.Verify(other); err != nil || c.Scope != "" || c.HasScope("api/read") {
		t.Errorf("token without scopes: %+v, %v", c, err)
	}
}

func TestIssueRefuses(t *testing.T) {
	clock := newFakeClock()
	iss := newTestIssuer(t, clock)
	tests := []struct {
		name   string
		mod    func(i *Issuer)
		client string
		scopes []string
	}{
		{"empty client", func(*Issuer) {}, "", nil},
		{"scope with a space", func(*Issuer) {}, "app", []string{"a b"}},
		{"scope with a quote", func(*Issuer) {}, "app", []string{`a"`}},
		{"no issuer", func(i *Issuer) { i.Issuer = "" }, "app", nil},
		{"no audience", func(i *Issuer) { i.Audience = "" }, "app", nil},
		{"no keys", func(i *Issuer) { i.Keys = nil }, "app", nil},
		{"empty key set", func(i *Issuer) { i.Keys = &KeySet{} }, "app", nil},
		{"TTL under a second", func(i *Issuer) { i.TTL = time.Millisecond }, "app", nil},
	}
	for _, tt := range tests {
		i := *iss
		tt.mod(&i)
		if _, _, err := i.Issue(tt.client, tt.scopes); err == nil {
			t.Errorf("%s: Issue succeeded", tt.name)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	clock := newFakeClock()
	iss := newTestIssuer(t, clock)
	k := iss.Keys.ring.Load().keys[0]
	goodHeader := `{"alg":"EdDSA","typ":"JWT","kid":"` + k.kid + `"}`
	valid, _, err := iss.Issue("app", []string{"api/read"})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	other := newTestIssuer(t, clock) // another key set, same iss and aud
	foreign, _, _ := other.Issue("app", []string{"api/read"})
	claimsWith := func(mod func(*Claims)) Claims {
		c := validClaims(clock)
		mod(&c)
		return c
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	// A signature whose last character differs only in bits that
	// base64url decoding drops: non-canonical.
	last := parts[2][len(parts[2])-1]
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	idx := strings.IndexByte(alphabet, last)
	nonCanonical := parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + string(alphabet[idx^1])

	tests := []struct {
		name   string
		token  string
		reason error
	}{
		{"empty", "", ErrMalformed},
		{"one part", "abc", ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", valid + ".x", ErrMalformed},
		{"too large", valid + strings.Repeat("A", MaxTokenSize), ErrTokenTooLarge},
		{"flipped signature byte", parts[0] + "." + parts[1] + "." + flip(parts[2], 10), ErrBadSignature},
		{"flipped claims byte", parts[0] + "." + flip(parts[1], 10) + "." + parts[2], ErrBadSignature},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(foreign, ".")[2], ErrBadSignature},
		{"non-canonical signature", nonCanonical, ErrMalformed},
		{"signature with a newline", parts[0] + "." + parts[1] + "." + parts[2][:40] + "\n" + parts[2][40:], ErrMalformed},
		{"short signature", parts[0] + "." + parts[1] + "." + parts[2][:80], ErrMalformed},
		{"no signature", parts[0] + "." + parts[1] + ".", ErrMalformed},
		{"unknown kid (another key set)", foreign, ErrUnknownKey},
		{"alg none", craft(t, `{"alg":"none","typ":"JWT","kid":"`+k.kid+`"}`, validClaims(clock), nil), ErrUnsupportedAlg},
		{"alg none without kid", craft(t, `{"alg":"none"}`, validClaims(clock), nil), ErrUnsupportedAlg},
		{"alg HS256 keyed with the public key", craft(t, `{"alg":"HS256","typ":"JWT","kid":"`+k.kid+`"}`, validClaims(clock), func(in []byte) []byte {
			m := hmac.New(sha256.New, k.pub)
			m.Write(in)
			return m.Sum(nil)
		}), ErrUnsupportedAlg},
		{"alg EdDSA, header reordered", craft(t, `{"kid":"`+k.kid+`","alg":"EdDSA","typ":"JWT"}`, validClaims(clock), signWith(k)), ErrMalformed},
		{"alg EdDSA, extra crit", craft(t, `{"alg":"EdDSA","typ":"JWT","kid":"`+k.kid+`","crit":["exp"]}`, validClaims(clock), signWith(k)), ErrMalformed},
		{"header not base64", "!!!." + parts[1] + "." + parts[2], ErrMalformed},
		{"header not JSON", craft(t, "not json", validClaims(clock), signWith(k)), ErrMalformed},
		{"claims not JSON", craft(t, goodHeader, "not json", signWith(k)), ErrMalformed},
		{"claims of the wrong type", craft(t, goodHeader, `{"iss":1}`, signWith(k)), ErrMalformed},
		{"aud as a list", craft(t, goodHeader, `{"iss":"`+testIssuer+`","aud":["`+testAudience+`"],"sub":"app","exp":9999999999}`, signWith(k)), ErrMalformed},
		{"wrong aud", craft(t, goodHeader, claimsWith(func(c *Claims) { c.Audience = "other-api" }), signWith(k)), ErrWrongAudience},
		{"wrong iss", craft(t, goodHeader, claimsWith(func(c *Claims) { c.Issuer = "https://evil.test" }), signWith(k)), ErrWrongIssuer},
		{"no sub", craft(t, goodHeader, claimsWith(func(c *Claims) { c.Subject = "" }), signWith(k)), ErrMalformed},
		{"no exp", craft(t, goodHeader, claimsWith(func(c *Claims) { c.ExpiresAt = 0 }), signWith(k)), ErrMalformed},
		{"expired beyond leeway", craft(t, goodHeader, claimsWith(func(c *Claims) { c.ExpiresAt = clock.Now().Unix() - 31 }), signWith(k)), ErrExpired},
		{"nbf beyond leeway", craft(t, goodHeader, claimsWith(func(c *Claims) { c.NotBefore = clock.Now().Unix() + 31 }), signWith(k)), ErrNotYetValid},
	}
	for _, tt := range tests {
		c, err := iss.Verify(tt.token)
		if !errors.Is(err, tt.reason) || !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.reason)
		}
		if c != (Claims{}) {
			t.Errorf("%s: claims %+v returned with an error", tt.name, c)
		}
		if _, ok := errors.AsType[*TokenError](err); !ok {
			t.Errorf("%s: %T is not a *TokenError", tt.name, err)
		}
	}

	// Within the leeway.
	withExtra := map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "app", "exp": clock.Now().Unix() + 60, "cnf": map[string]string{"x": "y"}}
	for name, c := range map[string]any{
		"expired 30 s ago":       claimsWith(func(c *Claims) { c.ExpiresAt = clock.Now().Unix() - 30 }),
		"valid in 30 s":          claimsWith(func(c *Claims) { c.NotBefore = clock.Now().Unix() + 30 }),
		"unknown claims ignored": withExtra,
	} {
		if _, err := iss.Verify(craft(t, goodHeader, c, signWith(k))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestVerifyExpiry(t *testing.T) {
	clock := newFakeClock()
	iss := newTestIssuer(t, clock)
	iss.TTL = 10 * time.Minute
	token, _, err := iss.Issue("app", []string{"api/read"})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		reason  error // nil: valid
	}{
		{0, nil},
		{9 * time.Minute, nil},
		{time.Minute + 30*time.Second, nil}, // exp + leeway
		{time.Second, ErrExpired},
		{24 * time.Hour, ErrExpired},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		_, err := iss.Verify(token)
		if s.reason == nil && err != nil || s.reason != nil && !errors.Is(err, s.reason) {
			t.Errorf("at %v: Verify = %v, want %v", clock.Now(), err, s.reason)
		}
	}
	// A clock behind the issuer's.
	clock2 := newFakeClock()
	clock2.Advance(-31 * time.Second)
	early := *iss
	early.Now = clock2.Now
	fresh, _, _ := iss.Issue("app", nil)
	if _, err := early.Verify(fresh); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("token from 31 s in the future: %v", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	clock := newFakeClock()
	iss := newTestIssuer(b, clock)
	token, _, err := iss.Issue("todo-app", []string{"api/read", "api/upsert-delete"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Verify(token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	iss := newTestIssuer(b, newFakeClock())
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := iss.Issue("todo-app", []string{"api/read", "api/upsert-delete"}); err != nil {
			b.Fatal(err)
		}
	}
}
