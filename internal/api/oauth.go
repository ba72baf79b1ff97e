package api

import (
	"context"
	"net/http"

	"github.com/holdfast/holdfast/internal/oauth"
)

// OAuth makes an OAuth2 token server the ToDo API's Authorizer.
func OAuth(s *oauth.Server) Authorizer { return oauthAuthorizer{s} }

type oauthAuthorizer struct{ s *oauth.Server }

func (a oauthAuthorizer) Require(scopes ...string) func(http.HandlerFunc) http.HandlerFunc {
	return a.s.Require(scopes...)
}

func (a oauthAuthorizer) ClientID(ctx context.Context) string {
	c, _ := oauth.ClaimsFrom(ctx)
	return c.Subject
}

// RateLimited adds the per-client rate limit to auth.
func RateLimited(l *RateLimiter, auth Authorizer) Authorizer { return limit(l, auth) }
