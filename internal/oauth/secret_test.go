package oauth

import (
	"encoding/base64"
	"testing"
)

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 || len(a) != 43 {
		t.Fatalf("NewSecret = %q (%d bytes, %v), want 43 base64url characters of 32 bytes", a, len(raw), err)
	}
	if a == b {
		t.Fatal("two secrets are equal")
	}
}

func TestHashSecret(t *testing.T) {
	// SHA-256("abc") from FIPS 180-2, in base64url.
	if got, want := HashSecret("abc"), "sha256:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"; got != want {
		t.Fatalf("HashSecret(abc) = %s, want %s", got, want)
	}
	if !validSecretHash(HashSecret("")) {
		t.Fatal("HashSecret output is not a valid secret hash")
	}
}

func TestCheckSecret(t *testing.T) {
	c := Client{ID: "app", SecretHash: HashSecret("s3cret")}
	tests := []struct {
		client Client
		secret string
		want   bool
	}{
		{c, "s3cret", true},
		{c, "s3cret ", false},
		{c, "S3cret", false},
		{c, "", false},
		{Client{SecretHash: ""}, "", false},
		{Client{SecretHash: "s3cret"}, "s3cret", false},
	}
	for _, tt := range tests {
		if got := tt.client.CheckSecret(tt.secret); got != tt.want {
			t.Errorf("hash %q: CheckSecret(%q) = %v, want %v", tt.client.SecretHash, tt.secret, got, tt.want)
		}
	}
}
