// Package scram implements the server side of SCRAM-SHA-256 (RFC 5802,
// RFC 7677) as PostgreSQL speaks it, and PostgreSQL's stored verifier format.
//
// It is pure code over bytes: the caller moves the payloads of the
// AuthenticationSASL / SASLInitialResponse / AuthenticationSASLContinue /
// SASLResponse / AuthenticationSASLFinal messages (for example with
// pgproto3) and hands them to a Server.
package scram

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

const (
	// Mechanism is the SASL mechanism name implemented by this package.
	Mechanism = "SCRAM-SHA-256"
	// MechanismPlus is the channel-binding variant, which is not supported.
	MechanismPlus = "SCRAM-SHA-256-PLUS"

	// DefaultIterations is PostgreSQL's default scram_iterations.
	DefaultIterations = 4096
	// SaltLen is the salt length used by NewVerifier (PostgreSQL's
	// SCRAM_DEFAULT_SALT_LEN).
	SaltLen = 16
	// KeyLen is the length of StoredKey and ServerKey (SHA-256 output).
	KeyLen = sha256.Size

	verifierPrefix = "SCRAM-SHA-256$"
)

// Verifier is PostgreSQL's stored form of a SCRAM-SHA-256 secret:
//
//	SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//
// It contains no plaintext-equivalent material: a Verifier lets a server
// check a client's proof but not impersonate the client to another server.
// (It does, however, allow an offline dictionary attack, so keep it private.)
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// NewVerifier derives a verifier for password with a random 16-byte salt.
// iterations defaults to 4096 when 0.
//
// The password is prepared the way PostgreSQL prepares it
// (pg_be_scram_build_secret): SASLprep (RFC 4013) is applied when the
// password is valid UTF-8 and SASLprep succeeds; otherwise the raw password
// bytes are used. Pure-ASCII passwords are used unchanged. An empty password
// is rejected, as PostgreSQL refuses to store one.
func NewVerifier(password string, iterations int) (Verifier, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return Verifier{}, fmt.Errorf("scram: generating salt: %w", err)
	}
	return newVerifierWithSalt(password, salt, iterations)
}

func newVerifierWithSalt(password string, salt []byte, iterations int) (Verifier, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < 0 || iterations > math.MaxInt32 {
		return Verifier{}, fmt.Errorf("scram: iteration count %d out of range [1, %d]", iterations, math.MaxInt32)
	}
	if password == "" {
		return Verifier{}, errors.New("scram: empty password")
	}
	if len(salt) == 0 {
		return Verifier{}, errors.New("scram: empty salt")
	}
	salted, err := pbkdf2.Key(sha256.New, string(preparePassword(password)), salt, iterations, KeyLen)
	if err != nil {
		return Verifier{}, fmt.Errorf("scram: pbkdf2: %w", err)
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	storedKey := sha256.Sum256(clientKey)
	return Verifier{
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  storedKey[:],
		ServerKey:  hmacSHA256(salted, []byte("Server Key")),
	}, nil
}

// Validate reports whether v is usable: iterations in [1, MaxInt32], a
// non-empty salt and 32-byte keys.
func (v Verifier) Validate() error {
	switch {
	case v.Iterations < 1 || v.Iterations > math.MaxInt32:
		return fmt.Errorf("scram: verifier iteration count %d out of range [1, %d]", v.Iterations, math.MaxInt32)
	case len(v.Salt) == 0:
		return errors.New("scram: verifier has empty salt")
	case len(v.StoredKey) != KeyLen:
		return fmt.Errorf("scram: verifier StoredKey is %d bytes, want %d", len(v.StoredKey), KeyLen)
	case len(v.ServerKey) != KeyLen:
		return fmt.Errorf("scram: verifier ServerKey is %d bytes, want %d", len(v.ServerKey), KeyLen)
	}
	return nil
}

// String returns the PostgreSQL text form of v.
func (v Verifier) String() string {
	b64 := base64.StdEncoding
	return verifierPrefix + strconv.Itoa(v.Iterations) + ":" + b64.EncodeToString(v.Salt) +
		"$" + b64.EncodeToString(v.StoredKey) + ":" + b64.EncodeToString(v.ServerKey)
}

// ParseVerifier parses PostgreSQL's text form strictly: exact prefix, a
// decimal iteration count in [1, MaxInt32] without sign or leading zeros,
// canonical padded standard base64 (no whitespace), a non-empty salt and
// 32-byte keys. ParseVerifier(v.String()) round-trips for any valid v.
func ParseVerifier(s string) (Verifier, error) {
	rest, ok := strings.CutPrefix(s, verifierPrefix)
	if !ok {
		return Verifier{}, errors.New(`scram: verifier does not start with "SCRAM-SHA-256$"`)
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return Verifier{}, errors.New(`scram: verifier lacks "$" between parameters and keys`)
	}
	if strings.Contains(keys, "$") {
		return Verifier{}, errors.New(`scram: verifier has too many "$"-separated fields`)
	}
	iterStr, saltStr, ok := strings.Cut(params, ":")
	if !ok || strings.Contains(saltStr, ":") {
		return Verifier{}, errors.New(`scram: verifier parameters must be "<iterations>:<salt>"`)
	}
	storedStr, serverStr, ok := strings.Cut(keys, ":")
	if !ok || strings.Contains(serverStr, ":") {
		return Verifier{}, errors.New(`scram: verifier keys must be "<StoredKey>:<ServerKey>"`)
	}

	iterations, err := parseIterations(iterStr)
	if err != nil {
		return Verifier{}, err
	}
	var v Verifier
	v.Iterations = iterations
	if v.Salt, err = decodeBase64(saltStr); err != nil {
		return Verifier{}, fmt.Errorf("scram: verifier salt: %w", err)
	}
	if len(v.Salt) == 0 {
		return Verifier{}, errors.New("scram: verifier salt is empty")
	}
	if v.StoredKey, err = decodeBase64(storedStr); err != nil {
		return Verifier{}, fmt.Errorf("scram: verifier StoredKey: %w", err)
	}
	if len(v.StoredKey) != KeyLen {
		return Verifier{}, fmt.Errorf("scram: verifier StoredKey is %d bytes, want %d", len(v.StoredKey), KeyLen)
	}
	if v.ServerKey, err = decodeBase64(serverStr); err != nil {
		return Verifier{}, fmt.Errorf("scram: verifier ServerKey: %w", err)
	}
	if len(v.ServerKey) != KeyLen {
		return Verifier{}, fmt.Errorf("scram: verifier ServerKey is %d bytes, want %d", len(v.ServerKey), KeyLen)
	}
	return v, nil
}

func parseIterations(s string) (int, error) {
	if s == "" {
		return 0, errors.New("scram: verifier iteration count is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("scram: verifier iteration count %q is not a decimal number", s)
		}
	}
	if s[0] == '0' {
		return 0, fmt.Errorf("scram: verifier iteration count %q must be positive without leading zeros", s)
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("scram: verifier iteration count %q out of range [1, %d]", s, math.MaxInt32)
	}
	return int(n), nil
}

// decodeBase64 decodes canonical, padded, standard base64. Unlike
// encoding/base64 alone it rejects embedded CR/LF and non-zero padding bits,
// so the encoding of a value is unique.
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %w", err)
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("invalid base64: not in canonical form")
	}
	return b, nil
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
