package oauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
)

// secretHashPrefix names the hash function of a Client.SecretHash.
const secretHashPrefix = "sha256:"

// dummyHash is what an unknown client's secret is checked against, so that
// an unknown client costs the same work as a wrong secret.
var dummyHash = HashSecret("holdfast: no such client")

// NewSecret returns a new client secret: 32 bytes from crypto/rand,
// base64url without padding (43 characters).
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("oauth: generate client secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashSecret returns the form of secret kept in the clients file:
// "sha256:" + base64url(SHA-256(secret)). An unsalted fast hash is enough
// because secrets come from NewSecret (see the package comment).
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return secretHashPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// CheckSecret reports whether secret hashes to c.SecretHash, comparing in
// constant time.
func (c Client) CheckSecret(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(c.SecretHash)) == 1
}

// validSecretHash reports whether h has the form HashSecret produces.
func validSecretHash(h string) bool {
	if len(h) != len(secretHashPrefix)+43 || h[:len(secretHashPrefix)] != secretHashPrefix {
		return false
	}
	b, err := b64.DecodeString(h[len(secretHashPrefix):])
	return err == nil && len(b) == sha256.Size
}
