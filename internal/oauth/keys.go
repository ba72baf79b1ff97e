package oauth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// KeySet holds the Ed25519 keys that sign and verify access tokens, newest
// first; the newest signs. Readers (Issue, Verify, JWKS) take an immutable
// snapshot without locking; Rotate, Prune and reloads replace it.
type KeySet struct {
	ring atomic.Pointer[keyRing]
	now  func() time.Time

	mu sync.Mutex // serialises writers; guards path and stat
	// path is the keys file the set was loaded from or last written to.
	path string
	// stat is the keys file as last read or written, to detect changes.
	stat os.FileInfo
}

// KeyInfo describes a key of a KeySet.
type KeyInfo struct {
	// ID is the JWS kid: the first 16 base64url characters of SHA-256 of
	// the public key.
	ID string `json:"kid"`
	// Created is when the key was generated.
	Created time.Time `json:"created"`
}

// keyRing is an immutable snapshot of the keys, decoded once.
type keyRing struct {
	keys []*signingKey // newest first; keys[0] signs
	jwks []byte
}

// signingKey is one decoded key.
type signingKey struct {
	kid     string
	created time.Time
	seed    []byte
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	// header is the base64url JWS header of the tokens this key signs.
	header string
}

// keyFile is the JSON document of a keys file.
type keyFile struct {
	Keys []keyRecord `json:"keys"`
}

// keyRecord is one key in the keys file.
type keyRecord struct {
	KID     string    `json:"kid"`
	Created time.Time `json:"created"`
	// PrivateKey is the 32-byte Ed25519 seed, standard base64.
	PrivateKey string `json:"private_key"`
}

// jwk is an Ed25519 public key as RFC 8037 writes it.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// keyID derives the kid of a public key.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

// newSigningKey decodes a key from its seed.
func newSigningKey(seed []byte, created time.Time) *signingKey {
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	kid := keyID(pub)
	// kid is base64url, so it needs no JSON escaping.
	header := `{"alg":"EdDSA","typ":"JWT","kid":"` + kid + `"}`
	return &signingKey{
		kid:     kid,
		created: created.UTC(),
		seed:    slices.Clone(seed),
		priv:    priv,
		pub:     pub,
		header:  base64.RawURLEncoding.EncodeToString([]byte(header)),
	}
}

// generateKey makes a new key.
func generateKey(created time.Time) (*signingKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("oauth: generate signing key: %w", err)
	}
	return newSigningKey(seed, created.Truncate(time.Second)), nil
}

// newKeyRing builds the snapshot for keys, newest first.
func newKeyRing(keys []*signingKey) *keyRing {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.pub), Kid: k.kid, Alg: "EdDSA", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic("oauth: BUG: marshal JWKS: " + err.Error())
	}
	return &keyRing{keys: keys, jwks: b}
}

// byHeader returns the key whose JWS header is exactly h, or nil.
func (r *keyRing) byHeader(h string) *signingKey {
	for _, k := range r.keys {
		if k.header == h {
			return k
		}
	}
	return nil
}

// byKid returns the key with kid, or nil.
func (r *keyRing) byKid(kid string) *signingKey {
	for _, k := range r.keys {
		if k.kid == kid {
			return k
		}
	}
	return nil
}

// readKeyFile reads and decodes the keys file at path.
func readKeyFile(path string) ([]*signingKey, os.FileInfo, error) {
	b, fi, err := readPrivateFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("oauth: keys file: %w", err)
	}
	var f keyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("oauth: keys file %s: %w", path, err)
	}
	if len(f.Keys) == 0 {
		return nil, nil, fmt.Errorf("oauth: keys file %s holds no keys; remove it to have a key generated", path)
	}
	keys := make([]*signingKey, 0, len(f.Keys))
	for i, rec := range f.Keys {
		seed, err := base64.StdEncoding.DecodeString(rec.PrivateKey)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, nil, fmt.Errorf("oauth: keys file %s: keys[%d].private_key must be the base64 of a %d-byte Ed25519 seed", path, i, ed25519.SeedSize)
		}
		k := newSigningKey(seed, rec.Created)
		if rec.KID != k.kid {
			return nil, nil, fmt.Errorf("oauth: keys file %s: keys[%d].kid is %q but its key's id is %q", path, i, rec.KID, k.kid)
		}
		if slices.ContainsFunc(keys, func(o *signingKey) bool { return o.kid == k.kid }) {
			return nil, nil, fmt.Errorf("oauth: keys file %s: keys[%d] (kid %s) is listed twice", path, i, k.kid)
		}
		keys = append(keys, k)
	}
	return keys, fi, nil
}

// writeKeyFile writes keys to path atomically, mode 0600.
func writeKeyFile(path string, keys []*signingKey) (os.FileInfo, error) {
	f := keyFile{Keys: make([]keyRecord, 0, len(keys))}
	for _, k := range keys {
		f.Keys = append(f.Keys, keyRecord{KID: k.kid, Created: k.created, PrivateKey: base64.StdEncoding.EncodeToString(k.seed)})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("oauth: write keys file %s: %w", path, err)
	}
	fi, err := writeFileAtomic(path, append(b, '\n'))
	if err != nil {
		return nil, fmt.Errorf("oauth: write keys file %s: %w", path, err)
	}
	return fi, nil
}

// LoadOrCreateKeys reads the keys file at path, or creates it (mode 0600)
// with one new key if it does not exist. It refuses a file that group or
// others may access (ErrInsecureFile) and keys whose kid does not match.
func LoadOrCreateKeys(path string) (*KeySet, error) {
	return loadOrCreateKeys(path, time.Now)
}

// loadOrCreateKeys is LoadOrCreateKeys with a clock for Rotate and Prune.
func loadOrCreateKeys(path string, now func() time.Time) (*KeySet, error) {
	ks := &KeySet{now: now, path: path}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	keys, fi, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var k *signingKey
		if k, err = generateKey(now()); err != nil {
			return nil, err
		}
		keys = []*signingKey{k}
		fi, err = writeKeyFile(path, keys)
	}
	if err != nil {
		return nil, err
	}
	ks.setLocked(keys, fi)
	return ks, nil
}

// setLocked installs keys read from or written to ks.path, whose stat is fi.
func (ks *KeySet) setLocked(keys []*signingKey, fi os.FileInfo) {
	ks.stat = fi
	ks.ring.Store(newKeyRing(keys))
}

// currentLocked returns the keys of the file at path, or the keys in memory
// if there is no such file. Writers start from the file because another
// process may have rotated since this set was loaded.
func (ks *KeySet) currentLocked(path string) ([]*signingKey, error) {
	keys, _, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if r := ks.ring.Load(); r != nil {
			return slices.Clone(r.keys), nil
		}
		return nil, nil
	}
	return keys, err
}

// clock returns the set's clock.
func (ks *KeySet) clock() time.Time {
	if ks.now != nil {
		return ks.now()
	}
	return time.Now()
}

// Rotate adds a new key, which becomes the signing key, and writes the keys
// file at path. Older keys stay, so the tokens they signed keep verifying,
// until Prune removes them. It starts from the file's current content, so a
// rotation by another process is not lost.
func (ks *KeySet) Rotate(path string) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	keys, err := ks.currentLocked(path)
	if err != nil {
		return err
	}
	k, err := generateKey(ks.clock())
	if err != nil {
		return err
	}
	keys = append([]*signingKey{k}, keys...)
	fi, err := writeKeyFile(path, keys)
	if err != nil {
		return err
	}
	ks.path = path
	ks.setLocked(keys, fi)
	return nil
}

// Prune removes from the keys file at path the keys retired for longer than
// olderThan, and from the set. A key is retired when the next newer key was
// created, since from then on it signs nothing; pass a retention of at least
// the token TTL plus a second (a Server notices the file within a second) so
// that no unexpired token loses its key. The signing key is never removed.
func (ks *KeySet) Prune(path string, olderThan time.Duration) error {
	if olderThan < 0 {
		return fmt.Errorf("oauth: prune keys: retention %v is negative", olderThan)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	keys, err := ks.currentLocked(path)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return fmt.Errorf("oauth: prune keys: %s holds no keys", path)
	}
	now := ks.clock()
	n := len(keys)
	for i := 1; i < len(keys); i++ {
		if retired := keys[i-1].created; now.Sub(retired) > olderThan {
			n = i
			break
		}
	}
	if n == len(keys) {
		return nil
	}
	keys = keys[:n]
	fi, err := writeKeyFile(path, keys)
	if err != nil {
		return err
	}
	ks.path = path
	ks.setLocked(keys, fi)
	return nil
}

// reloadIfChanged re-reads the keys file if it changed since it was last
// read or written. On error the keys in memory stay, and the failed version
// of the file is not retried until it changes again.
func (ks *KeySet) reloadIfChanged() (bool, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.path == "" {
		return false, nil
	}
	fi, err := os.Stat(ks.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && ks.stat == nil {
			return false, nil // already reported
		}
		ks.stat = nil
		return false, fmt.Errorf("oauth: keys file: %w", err)
	}
	if !fileChanged(ks.stat, fi) {
		return false, nil
	}
	keys, rfi, err := readKeyFile(ks.path)
	if err != nil {
		ks.stat = fi
		return false, err
	}
	ks.setLocked(keys, rfi)
	return true, nil
}

// JWKS returns the public keys as an RFC 7517 JWK set (RFC 8037 OKP keys),
// newest first.
func (ks *KeySet) JWKS() []byte {
	r := ks.ring.Load()
	if r == nil {
		return []byte(`{"keys":[]}`)
	}
	return bytes.Clone(r.jwks)
}

// Info lists the keys, newest (the signing key) first.
func (ks *KeySet) Info() []KeyInfo {
	r := ks.ring.Load()
	if r == nil {
		return nil
	}
	out := make([]KeyInfo, len(r.keys))
	for i, k := range r.keys {
		out[i] = KeyInfo{ID: k.kid, Created: k.created}
	}
	return out
}
