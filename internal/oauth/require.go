package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/problem"
)

// claimsKey is the context key of the verified claims.
type claimsKey struct{}

// ClaimsFrom returns the claims Require verified for the request of ctx.
func ClaimsFrom(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}

// Require returns middleware that admits a request whose Authorization:
// Bearer token verifies and carries at least one of scopes (any valid
// token if scopes is empty), and puts the claims in its context
// (ClaimsFrom). Refusals are problem+json with field Authorization:
//
//   - no bearer token: 401, WWW-Authenticate: Bearer realm="holdfast";
//   - a token that does not verify (forged, expired, another audience...):
//     401, Bearer realm="holdfast", error="invalid_token",
//     error_description="<reason>";
//   - none of the scopes: 403, Bearer realm="holdfast",
//     error="insufficient_scope", scope="<scopes>".
//
// A scope that is not a valid scope is a programming error: Require panics.
func (s *Server) Require(scopes ...string) func(http.HandlerFunc) http.HandlerFunc {
	for _, sc := range scopes {
		if !scopePattern.MatchString(sc) {
			panic("oauth: BUG: Require(" + strconv.Quote(sc) + "): not a valid scope")
		}
	}
	scopes = slices.Clone(scopes)
	insufficient := `Bearer realm="` + realm + `", error="insufficient_scope", scope="` + strings.Join(scopes, " ") + `"`
	insufficientDetail := "the access token carries none of the scopes this route needs: " + strings.Join(scopes, ", ")
	return func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			s.refresh()
			token, ok := bearerToken(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
				problem.Write(w, http.StatusUnauthorized, "Authorization", "this route needs Authorization: Bearer <access token>; get one from POST "+TokenPath)
				return
			}
			claims, err := s.verify(token)
			if err != nil {
				reason := describe(err)
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token", error_description="`+reason+`"`)
				problem.Write(w, http.StatusUnauthorized, "Authorization", "the access token is refused: "+reason+"; get a new one from POST "+TokenPath)
				return
			}
			if len(scopes) > 0 && !slices.ContainsFunc(scopes, claims.HasScope) {
				w.Header().Set("WWW-Authenticate", insufficient)
				problem.Write(w, http.StatusForbidden, "Authorization", insufficientDetail)
				return
			}
			next(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, claims)))
		}
	}
}

// bearerToken returns the token of an Authorization: Bearer header; ok is
// false if the request has no bearer token (no header, another scheme, or
// an empty token).
func bearerToken(r *http.Request) (token string, ok bool) {
	scheme, rest, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(rest)
	return token, strings.EqualFold(scheme, "Bearer") && token != ""
}

// describe gives the error_description of a refused token: the reason's
// fixed text, which holds no quotes.
func describe(err error) string {
	if te, ok := errors.AsType[*TokenError](err); ok {
		return te.Reason.Error()
	}
	return "the token cannot be verified"
}

// maxVerified bounds the verified-token cache; when full it is emptied
// (tokens are re-verified on their next use).
const maxVerified = 10000

// maxVerifiedAge is how long a verification is trusted.
const maxVerifiedAge = time.Minute

// verifiedCache maps a token that verified to its claims.
type verifiedCache struct {
	mu sync.Mutex
	m  map[string]cachedClaims // guarded by mu
}

type cachedClaims struct {
	Claims
	verifiedAt int64 // Unix seconds
}

// verify is Issuer.Verify with a cache of tokens that verified. A cached
// token is still refused once it expires (by the server's clock); the
// cache is emptied when the keys file changes, so a removed key's tokens
// are refused from the next reload on; and a verification is trusted for
// at most maxVerifiedAge.
func (s *Server) verify(token string) (Claims, error) {
	now := s.now()
	s.verified.mu.Lock()
	c, ok := s.verified.m[token]
	s.verified.mu.Unlock()
	if ok && now.Unix() < c.ExpiresAt && now.Unix()-c.verifiedAt < int64(maxVerifiedAge/time.Second) {
		return c.Claims, nil
	}
	claims, err := s.issuer.Verify(token)
	if err != nil {
		return claims, err
	}
	s.verified.mu.Lock()
	if s.verified.m == nil || len(s.verified.m) >= maxVerified {
		s.verified.m = make(map[string]cachedClaims)
	}
	s.verified.m[token] = cachedClaims{Claims: claims, verifiedAt: now.Unix()}
	s.verified.mu.Unlock()
	return claims, nil
}
