// Package oauth is holdfast's OAuth2 authorization server for machine
// clients: the client-credentials grant (RFC 6749 §4.4) at POST
// /oauth2/token, EdDSA-signed JWT access tokens (RFC 7519, RFC 8037), the
// public keys at GET /.well-known/jwks.json, and Require, the middleware
// that guards API routes with those tokens.
//
// # Client secrets
//
// Secrets are generated here (NewSecret: 256 bits from crypto/rand), never
// chosen by people, so the clients file keeps only an unsalted SHA-256 of
// each (HashSecret). Slow password hashes (bcrypt, argon2) and salts exist
// to make guessing low-entropy, reused passwords expensive; a 256-bit random
// secret can be neither guessed nor found from its hash however fast the
// hash is, and no precomputed table covers a 2^256 space. A fast hash also
// keeps the token endpoint cheap, so it is no CPU-exhaustion target. The
// comparison is constant-time, and an unknown client id is checked against
// a dummy hash, so that it answers exactly like a wrong secret, in about the
// same time.
//
// The clients file (YAML) and the keys file (JSON) must be mode 0600: they
// are refused when group or others may access them. Both are written
// atomically (temporary file, fsync, rename). A running Server re-reads them
// when their mtime, size or inode changes, checked at most once a second on
// the requests it serves, so `CreateClient` or `Rotate` run by a CLI process
// take effect without a restart. A file that fails to load (half-written by
// an editor, wrong mode) is logged and the previous content stays in force.
//
// # Signing keys
//
// Tokens are signed with Ed25519 (JWS alg EdDSA): small keys, fast
// deterministic signatures, and no parameter choices to get wrong. The keys
// file lists keys newest first; the first one signs. Rotate adds a new key in
// front and keeps the older ones, so tokens they signed keep verifying.
// Prune(path, retention) drops a key once it has been retired (replaced as
// the signing key) for longer than retention; a retention of at least the
// token TTL plus a second (the reload interval) therefore never invalidates a
// token that has not expired. The key id (kid) is derived from the public
// key, so the file cannot name a key wrongly. JWKS serves the public halves,
// newest first, for verifiers outside holdfast.
//
// Verification is strict and cheap. The JWS header of every token holdfast
// issues is a fixed string per key, so Verify accepts a header only if it is
// byte-identical to the one of a key it holds: algorithm confusion (alg
// "none", HS256 keyed with the public key) is refused by construction and no
// header JSON is decoded on the success path. Keys are decoded once, when
// the file is loaded. The signature must be exactly 86 canonical base64url
// characters, so no two strings verify as the same token. Only then are the
// claims decoded; iss and aud must be equal to the Issuer's, exp and nbf are
// checked with a leeway of 30 seconds, and tokens over 8 KiB are refused
// before any work.
//
// # What Require checks
//
// Require(scopes...) wants an Authorization: Bearer token that verifies as
// above and carries at least one of the scopes. No bearer token: 401 with
// WWW-Authenticate: Bearer realm="holdfast". A token that does not verify:
// 401 with error="invalid_token" and an error_description naming the reason
// (errors.Is(err, ErrExpired) tells expiry apart). A valid token without any
// of the scopes: 403 with error="insufficient_scope". Bodies are RFC 9457
// problem+json with field Authorization. The handler finds the claims with
// ClaimsFrom.
//
// # Risks
//
// An access token cannot be revoked before it expires: removing a client
// from the file stops new tokens only, so keep the TTL short (default one
// hour). Whoever reads the keys file can mint tokens for any client. Two
// processes that rewrite the same file at the same moment (two rotations)
// can lose one of the updates: there is no file locking. Each holdfast node
// has its own keys file unless the files are shared, so tokens are valid
// only on the nodes that hold the key.
package oauth
