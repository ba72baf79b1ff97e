package oauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

const (
	// DefaultTTL is the lifetime of access tokens when Issuer.TTL is 0.
	DefaultTTL = time.Hour
	// MaxTokenSize is the longest token Verify looks at.
	MaxTokenSize = 8 << 10
	// Leeway is the clock skew Verify tolerates on exp and nbf.
	Leeway = 30 * time.Second
)

// b64 decodes base64url strictly: no padding, zero trailing bits, so that
// one byte string has one encoding.
var b64 = base64.RawURLEncoding.Strict()

// sigLen is the length of a base64url Ed25519 signature.
var sigLen = base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize)

// Issuer issues and verifies access tokens: compact JWS (RFC 7515) JWTs
// (RFC 7519) signed with the KeySet's signing key, alg EdDSA.
type Issuer struct {
	// Keys signs and verifies.
	Keys *KeySet
	// Issuer is the iss claim, written and required.
	Issuer string
	// Audience is the aud claim, written and required.
	Audience string
	// TTL is the lifetime of issued tokens; 0 means DefaultTTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Claims are the claims of an access token. Times are NumericDate: Unix
// seconds.
type Claims struct {
	// Issuer (iss) is Issuer.Issuer.
	Issuer string `json:"iss"`
	// Audience (aud) is Issuer.Audience.
	Audience string `json:"aud"`
	// Subject (sub) is the client id.
	Subject string `json:"sub"`
	// Scope is the space-separated list of granted scopes.
	Scope string `json:"scope"`
	// IssuedAt (iat) is when the token was issued.
	IssuedAt int64 `json:"iat"`
	// NotBefore (nbf) is when the token becomes valid: when it was issued.
	NotBefore int64 `json:"nbf"`
	// ExpiresAt (exp) is when the token stops being valid.
	ExpiresAt int64 `json:"exp"`
	// ID (jti) is random, unique per token.
	ID string `json:"jti"`
}

// Scopes returns the granted scopes.
func (c Claims) Scopes() []string { return strings.Fields(c.Scope) }

// HasScope reports whether scope was granted.
func (c Claims) HasScope(scope string) bool {
	for s := range strings.SplitSeq(c.Scope, " ") {
		if s == scope && s != "" {
			return true
		}
	}
	return false
}

// now reads the clock.
func (i *Issuer) now() time.Time {
	if i.Now != nil {
		return i.Now()
	}
	return time.Now()
}

// ttl is the lifetime of issued tokens.
func (i *Issuer) ttl() time.Duration {
	if i.TTL == 0 {
		return DefaultTTL
	}
	return i.TTL
}

// ring checks the configuration and returns the current keys.
func (i *Issuer) ring() (*keyRing, error) {
	if i.Issuer == "" || i.Audience == "" {
		return nil, errors.New("oauth: Issuer.Issuer and Issuer.Audience must be set")
	}
	if i.Keys == nil {
		return nil, errors.New("oauth: Issuer.Keys is nil")
	}
	r := i.Keys.ring.Load()
	if r == nil || len(r.keys) == 0 {
		return nil, errors.New("oauth: the key set holds no keys; make it with LoadOrCreateKeys")
	}
	return r, nil
}

// Issue signs a token for clientID with scopes, valid from now for the TTL,
// and returns it with its expiry.
func (i *Issuer) Issue(clientID string, scopes []string) (token string, expiresAt time.Time, err error) {
	r, err := i.ring()
	if err != nil {
		return "", time.Time{}, err
	}
	ttl := i.ttl()
	if ttl < time.Second {
		return "", time.Time{}, fmt.Errorf("oauth: Issuer.TTL %v is shorter than a second", ttl)
	}
	if clientID == "" {
		return "", time.Time{}, errors.New("oauth: issue: empty client id")
	}
	for _, s := range scopes {
		if !scopePattern.MatchString(s) {
			return "", time.Time{}, fmt.Errorf("oauth: issue: scope %q must be 1 to 64 of a-z 0-9 / _ : . -", s)
		}
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("oauth: issue: token id: %w", err)
	}
	now := i.now().Unix()
	exp := now + int64(ttl/time.Second)
	payload, err := json.Marshal(Claims{
		Issuer: i.Issuer, Audience: i.Audience, Subject: clientID, Scope: strings.Join(scopes, " "),
		IssuedAt: now, NotBefore: now, ExpiresAt: exp, ID: base64.RawURLEncoding.EncodeToString(id[:]),
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("oauth: issue: %w", err)
	}
	k := r.keys[0]
	var sb strings.Builder
	sb.Grow(len(k.header) + 1 + base64.RawURLEncoding.EncodedLen(len(payload)) + 1 + sigLen)
	sb.WriteString(k.header)
	sb.WriteByte('.')
	sb.WriteString(base64.RawURLEncoding.EncodeToString(payload))
	sig := ed25519.Sign(k.priv, []byte(sb.String()))
	sb.WriteByte('.')
	sb.WriteString(base64.RawURLEncoding.EncodeToString(sig))
	return sb.String(), time.Unix(exp, 0), nil
}

// Verify checks token and returns its claims. A refused token gives a
// *TokenError wrapping ErrInvalidToken and the reason (ErrExpired,
// ErrBadSignature, ...); other errors mean the Issuer is misconfigured.
func (i *Issuer) Verify(token string) (Claims, error) {
	if len(token) > MaxTokenSize {
		return Claims{}, refuse(ErrTokenTooLarge, fmt.Sprintf("%d bytes", len(token)))
	}
	r, err := i.ring()
	if err != nil {
		return Claims{}, err
	}
	dot1 := strings.IndexByte(token, '.')
	if dot1 < 0 {
		return Claims{}, refuse(ErrMalformed, "not three dot-separated parts")
	}
	dot2 := strings.IndexByte(token[dot1+1:], '.')
	if dot2 < 0 {
		return Claims{}, refuse(ErrMalformed, "not three dot-separated parts")
	}
	dot2 += dot1 + 1
	header, payload, sig := token[:dot1], token[dot1+1:dot2], token[dot2+1:]
	if strings.IndexByte(sig, '.') >= 0 {
		return Claims{}, refuse(ErrMalformed, "more than three dot-separated parts")
	}
	// Every header holdfast writes is a fixed string per key: comparing
	// strings selects the key and refuses any other alg without decoding.
	k := r.byHeader(header)
	if k == nil {
		return Claims{}, explainHeader(r, header)
	}
	if len(sig) != sigLen {
		return Claims{}, refuse(ErrMalformed, fmt.Sprintf("signature is %d characters, want %d", len(sig), sigLen))
	}
	var s [ed25519.SignatureSize]byte
	if n, err := b64.Decode(s[:], []byte(sig)); err != nil || n != len(s) {
		return Claims{}, refuse(ErrMalformed, "signature is not base64url")
	}
	if !ed25519.Verify(k.pub, []byte(token[:dot2]), s[:]) {
		return Claims{}, refuse(ErrBadSignature, "kid "+k.kid)
	}
	buf := make([]byte, b64.DecodedLen(len(payload)))
	n, err := b64.Decode(buf, []byte(payload))
	if err != nil {
		return Claims{}, refuse(ErrMalformed, "claims are not base64url")
	}
	var c Claims
	if err := json.Unmarshal(buf[:n], &c); err != nil {
		return Claims{}, refuse(ErrMalformed, "claims are not a JSON object of the expected types")
	}
	if err := i.checkClaims(c); err != nil {
		return Claims{}, err
	}
	return c, nil
}

// checkClaims checks the claims of a token whose signature verified.
func (i *Issuer) checkClaims(c Claims) error {
	switch {
	case c.Issuer != i.Issuer:
		return refuse(ErrWrongIssuer, fmt.Sprintf("iss %q, want %q", c.Issuer, i.Issuer))
	case c.Audience != i.Audience:
		return refuse(ErrWrongAudience, fmt.Sprintf("aud %q, want %q", c.Audience, i.Audience))
	case c.Subject == "":
		return refuse(ErrMalformed, "no sub claim")
	case c.ExpiresAt == 0:
		return refuse(ErrMalformed, "no exp claim")
	}
	now := i.now().Unix()
	leeway := int64(Leeway / time.Second)
	if now > c.ExpiresAt+leeway {
		return refuse(ErrExpired, "expired at "+time.Unix(c.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	if c.NotBefore > now+leeway {
		return refuse(ErrNotYetValid, "valid from "+time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// explainHeader says why a header matched none of the keys. It runs only
// for refused tokens, so it may decode.
func explainHeader(r *keyRing, header string) error {
	raw, err := b64.DecodeString(header)
	if err != nil {
		return refuse(ErrMalformed, "header is not base64url")
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return refuse(ErrMalformed, "header is not a JSON object")
	}
	if h.Alg != "EdDSA" {
		return refuse(ErrUnsupportedAlg, fmt.Sprintf("alg %q, want EdDSA", h.Alg))
	}
	if r.byKid(h.Kid) == nil {
		return refuse(ErrUnknownKey, fmt.Sprintf("kid %q", h.Kid))
	}
	return refuse(ErrMalformed, "header differs from the one holdfast writes")
}
