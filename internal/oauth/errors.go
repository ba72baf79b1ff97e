package oauth

import "errors"

// ErrInvalidToken is wrapped by every error Verify returns for a token it
// refuses, together with exactly one of the reasons below.
var ErrInvalidToken = errors.New("invalid token")

// Reasons Verify refuses a token. Their texts are fit for an RFC 6750
// error_description (no quotes or backslashes).
var (
	// ErrTokenTooLarge: the token is longer than MaxTokenSize.
	ErrTokenTooLarge = errors.New("token larger than 8 KiB")
	// ErrMalformed: not a compact JWS, bad base64url, bad JSON, a header
	// unlike the ones holdfast writes, or missing claims.
	ErrMalformed = errors.New("malformed token")
	// ErrUnsupportedAlg: the header names an algorithm other than EdDSA.
	ErrUnsupportedAlg = errors.New("signing algorithm not accepted")
	// ErrUnknownKey: no key of the key set has the header's kid (never
	// known, or pruned).
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrBadSignature: the signature does not verify.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrExpired: exp is more than Leeway in the past.
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf is more than Leeway in the future.
	ErrNotYetValid = errors.New("token not valid yet")
	// ErrWrongIssuer: iss is not the Issuer's.
	ErrWrongIssuer = errors.New("token from another issuer")
	// ErrWrongAudience: aud is not the Issuer's audience.
	ErrWrongAudience = errors.New("token for another audience")
)

// TokenError is the error Verify returns for a token it refuses.
// errors.Is matches both Reason and ErrInvalidToken.
type TokenError struct {
	// Reason is one of the Err* reasons above.
	Reason error
	// Detail says more, for logs; it may quote the token's content.
	Detail string
}

// Error implements error.
func (e *TokenError) Error() string {
	if e.Detail == "" {
		return "invalid token: " + e.Reason.Error()
	}
	return "invalid token: " + e.Reason.Error() + ": " + e.Detail
}

// Unwrap lets errors.Is match Reason and ErrInvalidToken.
func (e *TokenError) Unwrap() []error { return []error{e.Reason, ErrInvalidToken} }

// refuse makes the error for a refused token.
func refuse(reason error, detail string) error { return &TokenError{Reason: reason, Detail: detail} }
