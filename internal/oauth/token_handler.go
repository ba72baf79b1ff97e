package oauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxTokenRequestBody bounds the body of a token request.
const maxTokenRequestBody = 8 << 10

// OAuth2 error codes of the token endpoint (RFC 6749 §5.2). The client
// credentials grant has no authorization code or refresh token, and every
// client may use it, so invalid_grant and unauthorized_client are never
// answered; they are named for completeness.
const (
	ErrCodeInvalidRequest       = "invalid_request"
	ErrCodeInvalidClient        = "invalid_client"
	ErrCodeInvalidGrant         = "invalid_grant"
	ErrCodeUnauthorizedClient   = "unauthorized_client"
	ErrCodeUnsupportedGrantType = "unsupported_grant_type"
	ErrCodeInvalidScope         = "invalid_scope"
)

// tokenResponse is a successful token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// oauthError is an error response (RFC 6749 §5.2).
type oauthError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	// client is the client id, when known, for the log.
	client string
}

// badRequest makes a 400 error with code.
func badRequest(code, description string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, Code: code, Description: description}
}

// clientCredentials are the credentials a request presents.
type clientCredentials struct {
	id, secret string
}

// TokenHandler is the token endpoint (POST /oauth2/token): the client
// credentials grant of RFC 6749 §4.4. The client authenticates with HTTP
// Basic (id and secret form-urlencoded first, RFC 6749 §2.3.1) or with the
// client_id and client_secret parameters, not both; scope, optional, is a
// subset of the client's scopes, all of them by default.
func (s *Server) TokenHandler(w http.ResponseWriter, r *http.Request) {
	s.refresh()
	resp, oerr := s.token(w, r)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if oerr != nil {
		s.log.Debug("token request refused", "client", oerr.client, "error", oerr.Code, "description", oerr.Description)
		writeOAuthError(w, oerr)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(resp)
}

// token runs the grant.
func (s *Server) token(w http.ResponseWriter, r *http.Request) (*tokenResponse, *oauthError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &oauthError{status: http.StatusMethodNotAllowed, Code: ErrCodeInvalidRequest, Description: "the token endpoint takes POST"}
	}
	form, oerr := readForm(w, r)
	if oerr != nil {
		return nil, oerr
	}
	creds, oerr := credentialsOf(r, form)
	if oerr != nil {
		return nil, oerr
	}
	grant := form.Get("grant_type")
	if grant == "" {
		return nil, badRequest(ErrCodeInvalidRequest, "grant_type is missing")
	}
	client, ok := s.authenticate(creds)
	if !ok {
		return nil, &oauthError{status: http.StatusUnauthorized, Code: ErrCodeInvalidClient, Description: "client authentication failed", client: sanitize(creds.id)}
	}
	if grant != "client_credentials" {
		return nil, &oauthError{status: http.StatusBadRequest, Code: ErrCodeUnsupportedGrantType, Description: "only grant_type client_credentials is supported", client: client.ID}
	}
	scopes, oerr := grantScopes(client, form)
	if oerr != nil {
		oerr.client = client.ID
		return nil, oerr
	}
	token, _, err := s.issuer.Issue(client.ID, scopes)
	if err != nil {
		s.log.Error("issue token", "client", client.ID, "err", err)
		return nil, &oauthError{status: http.StatusInternalServerError, Code: "server_error", Description: "the token could not be issued"}
	}
	s.log.Debug("token issued", "client", client.ID, "scope", strings.Join(scopes, " "))
	return &tokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(s.issuer.ttl() / time.Second),
		Scope:       strings.Join(scopes, " "),
	}, nil
}

// readForm reads the form-urlencoded body, at most maxTokenRequestBody
// bytes, refusing repeated parameters (RFC 6749 §3.2).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, badRequest(ErrCodeInvalidRequest, "Content-Type must be application/x-www-form-urlencoded")
	}
	tooLarge := badRequest(ErrCodeInvalidRequest, "the body is larger than 8 KiB")
	if r.ContentLength > maxTokenRequestBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenRequestBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		return nil, badRequest(ErrCodeInvalidRequest, "the body could not be read")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest(ErrCodeInvalidRequest, "the body is not valid application/x-www-form-urlencoded")
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, badRequest(ErrCodeInvalidRequest, "parameter "+sanitize(k)+" is repeated")
		}
	}
	return form, nil
}

// credentialsOf finds the client credentials: HTTP Basic or the client_id
// and client_secret parameters.
func credentialsOf(r *http.Request, form url.Values) (clientCredentials, *oauthError) {
	_, hasID := form["client_id"]
	_, hasSecret := form["client_secret"]
	auths := r.Header.Values("Authorization")
	if len(auths) > 1 {
		return clientCredentials{}, badRequest(ErrCodeInvalidRequest, "more than one Authorization header")
	}
	if len(auths) == 1 {
		scheme, rest, _ := strings.Cut(auths[0], " ")
		if !strings.EqualFold(scheme, "Basic") {
			return clientCredentials{}, &oauthError{status: http.StatusUnauthorized, Code: ErrCodeInvalidClient,
				Description: "clients authenticate with HTTP Basic or client_id and client_secret"}
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return clientCredentials{}, badRequest(ErrCodeInvalidRequest, "the Basic credentials are not base64")
		}
		id, secret, ok := strings.Cut(string(raw), ":")
		if !ok {
			return clientCredentials{}, badRequest(ErrCodeInvalidRequest, "the Basic credentials have no colon")
		}
		// RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
		if id, err = url.QueryUnescape(id); err != nil {
			return clientCredentials{}, badRequest(ErrCodeInvalidRequest, "the Basic user is not form-urlencoded (RFC 6749 section 2.3.1)")
		}
		if secret, err = url.QueryUnescape(secret); err != nil {
			return clientCredentials{}, badRequest(ErrCodeInvalidRequest, "the Basic password is not form-urlencoded (RFC 6749 section 2.3.1)")
		}
		if hasSecret {
			return clientCredentials{}, badRequest(ErrCodeInvalidRequest, "the client authenticated with both HTTP Basic and client_secret; use one")
		}
		if hasID && form.Get("client_id") != id {
			return clientCredentials{}, badRequest(ErrCodeInvalidRequest, "client_id differs from the HTTP Basic user")
		}
		return clientCredentials{id: id, secret: secret}, nil
	}
	switch {
	case hasSecret && !hasID:
		return clientCredentials{}, badRequest(ErrCodeInvalidRequest, "client_secret without client_id")
	case !hasID:
		return clientCredentials{}, &oauthError{status: http.StatusUnauthorized, Code: ErrCodeInvalidClient,
			Description: "no client authentication: use HTTP Basic or client_id and client_secret"}
	case !hasSecret:
		return clientCredentials{}, &oauthError{status: http.StatusUnauthorized, Code: ErrCodeInvalidClient,
			Description: "client_secret is missing", client: sanitize(form.Get("client_id"))}
	}
	return clientCredentials{id: form.Get("client_id"), secret: form.Get("client_secret")}, nil
}

// authenticate checks credentials. An unknown client is checked against a
// dummy hash, so that it costs what a wrong secret costs.
func (s *Server) authenticate(c clientCredentials) (Client, bool) {
	client, found := s.client(c.id)
	hash := dummyHash
	if found {
		hash = client.SecretHash
	}
	ok := Client{SecretHash: hash}.CheckSecret(c.secret)
	return client, found && ok
}

// grantScopes returns the scopes to grant: those requested, each allowed to
// the client, or all the client's if none is requested.
func grantScopes(client Client, form url.Values) ([]string, *oauthError) {
	requested := strings.Fields(form.Get("scope"))
	if len(requested) == 0 {
		return slices.Clone(client.Scopes), nil
	}
	granted := make([]string, 0, len(requested))
	for _, sc := range requested {
		if !slices.Contains(client.Scopes, sc) {
			return nil, badRequest(ErrCodeInvalidScope, "scope "+sanitize(sc)+" is not allowed to this client")
		}
		if !slices.Contains(granted, sc) {
			granted = append(granted, sc)
		}
	}
	return granted, nil
}

// writeOAuthError answers e (RFC 6749 §5.2). Every 401 carries a Basic
// challenge, as HTTP requires of a 401 (RFC 9110 §15.5.2).
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(e)
}

// sanitize makes s fit for an error_description (RFC 6749 §5.2: printable
// ASCII without quote and backslash) and short.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}
