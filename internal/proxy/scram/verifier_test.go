package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"testing"
)

// goldenPG holds verifiers produced by a real PostgreSQL 15.18 server
// (CREATE ROLE ... PASSWORD '<password>' with password_encryption =
// 'scram-sha-256', read back from pg_authid.rolpassword). Each password was
// chosen to exercise one branch of PostgreSQL's SASLprep handling.
var goldenPG = []struct {
	name     string
	password string
	prepped  string // what PostgreSQL feeds to PBKDF2
	verifier string
}{
	{"ascii", "secret", "secret",
		"SCRAM-SHA-256$4096:vg7hFUSi3X2I6BIYIxzfHQ==$zeswcC/WgsA0qmDxwVCi3t8kHmgtA4nahrP1EnJjehE=:LoixCsdZCQd/fxTbKqg0222kSCVYO5ANkgpn6hGq+TY="},
	{"ascii pencil", "pencil", "pencil",
		"SCRAM-SHA-256$4096:A4tZ8WuHEZo5b8QPIwSY2w==$O4LrAJLsp7kmfPe+nbQZdGjozHAV/SfsO9u+PPXpEUA=:+eB//sXuaSE1pjmwmdypKCbi03CUvhX2eIJwoEyLsrc="},
	{"soft hyphen mapped to nothing", "I\u00adX", "IX",
		"SCRAM-SHA-256$4096:3SEkglSY0yi7lCXL6lArPg==$yY9o3by0iJJAVnGEugMBGdqbNrTE2Ww2mjcOrOspZz8=:sByKHOk8Sl7OEFRBvg4VwBnVmKukCmx5LdikCk7hfy0="},
	{"roman numeral nine NFKC", "\u2168", "IX",
		"SCRAM-SHA-256$4096:NNEM3LdrytxEuB4/hLaW1g==$zpEKLDGCetaNa1+lH+PTCtot7f6GTRTO63qeNWFfCTc=:nF4CjSpYrhibY4OSUcxmZdlvMQe12asrNXmxtoNxuzs="},
	{"feminine ordinal NFKC", "\u00aa", "a",
		"SCRAM-SHA-256$4096:UzK7re0ICS8qmLpNcNdYag==$MuQK0YMPx2l/qh+Trzvqi1r4y5KAmf23Bqr4azWXhsk=:ArzmX/TAAiiPRVPrgl61LKy17BB8Gm7s1c7UMD391tM="},
	{"bidi violation falls back to raw", "\u0627\u0031", "\u0627\u0031",
		"SCRAM-SHA-256$4096:fxYIUjQ3qhNGmYgCHF0q+Q==$1jffPWKyhsg496b3zt8VM8RC0owbC3x6JGUiXGcNarE=:9psdsTcoGfHZwFCM6xFQj4r2T+dKV4knX4Nqq/MS71U="},
	{"ascii control char kept (ascii shortcut)", "\x07bell", "\x07bell",
		"SCRAM-SHA-256$4096:TIjij615xYbATIXUh8ELyw==$6QAcH/x/ncXpdEfJeZnMZcK4YJDfnXfm6PiMQip++AA=:iMIUoXqYSQ1DI9H7HtCt+XlQy1FsYaDbr4Xc7kgDC8U="},
	{"unassigned in 3.2 falls back to raw", "a\u0221", "a\u0221",
		"SCRAM-SHA-256$4096:ZvPY6I8gT4Li7aCGdgMbLg==$uKPLiCdTOYwTIIl4bAw2AMQNqcwzJcJCFRQKo++vfow=:33zn92KKU6IbA00pkm6FpPi+b1MIhWwXzwxh9Uro89U="},
	{"nbsp mapped to space", "\u00a0\u00a0", "  ",
		"SCRAM-SHA-256$4096:8dM0cOiRjpPXa7z5f9JSkQ==$jJleFkXweG+zgyjhhBqzBFlXoaFPusm55H1cj2GhEQg=:Z0+/dylADtp2+pM8ZXDh3et7q6NDk4L9HVXQkU/6r64="},
	{"zero width space is C.1.2 first", "\u200b", " ",
		"SCRAM-SHA-256$4096:JkzdRA/PY9oGS3xp0KeTZA==$yO/uOQrddUcTSUHN4nX7A9NDqLJoAqTg3wWYdbv1UZQ=:RyhMPDCepSmXYZdD5gtgptVg/DvEmhaRMPLxJSY0faw="},
	{"mapped to empty falls back to raw", "\u00ad", "\u00ad",
		"SCRAM-SHA-256$4096:eoU8X/JMOa/qrrmEzPhOwQ==$ovk6A5fYD6hcmhf1F1ipAlEac+1vW92Y8z6YA82I3M8=:Ax5gteoHnXUagv8d/rcsHWW4kuKrs3ww5ieV+YILXbQ="},
	{"fullwidth NFKC", "\uff50\uff41\uff53\uff53", "pass",
		"SCRAM-SHA-256$4096:y1ZnxW4hC8YFVuj91F8Whg==$HKHRwS/00hKZp49IJ9AMDESTMTrIEmCN+t3CnFtfW9c=:zVd2PTHBebE7QJg68lWPBs+ppXWLkZXeV7+aRWpNOaA="},
	{"ligature NFKC", "\ufb01x", "fix",
		"SCRAM-SHA-256$4096:X2SqFTVRWC3eT+ioXKY37Q==$csgGkB8RlNWt9xr9l413RUiu4LbssS3bRirp5QbcMAc=:uj50/xhmpB+/E4PPsG5E/mJgyyCICfaSIWRF39cCcIg="},
	{"ohm sign NFKC", "\u2126", "\u03a9",
		"SCRAM-SHA-256$4096:f5b1dH2/KOA9ca0Zj1opYQ==$q3+7DyPOdsjkWDKpEFyJegn36ap+CCU1XLPnR7cc5FA=:mF5Syt2haW0kIqLRxq1/DP4fZleF/V1DWZWAyhYxQ10="},
	{"valid RTL", "\u0627\u0628", "\u0627\u0628",
		"SCRAM-SHA-256$4096:xL54u/rmvQqXpA7ZACmOXw==$LCInfZkPXpqJoRB9KtqJufuYzxmpoZOWUDyvANReXKA=:Ixkg0bD9I2BIp7tQDsNFcj4vc6OotKsnHykAlC5abwM="},
	{"RTL with LCat falls back to raw", "\u05d0a\u05d0", "\u05d0a\u05d0",
		"SCRAM-SHA-256$4096:6MLJeRTkKdT422kIuGB6xg==$McUKZ87bxMhC8FnChmYWweS5R6NM2mYIuKHelCx30vY=:tnsTF/q0ejqVDapIO0qM6rOQnH71iW4uMa36VL5zTRY="},
	{"combining accent composed", "cafe\u0301", "caf\u00e9",
		"SCRAM-SHA-256$4096:xbDbiFX5dSvTfFMjgBvEgA==$FHrtngKLNli+JTAgn+lsKyEVkYBUJ4J4tJAam5rZGrM=:0j8i4/uhgQauos9ksn/kUsi0vgBVFmBfrOG+Vmk5ggw="},
	{"private use falls back to raw", "x\ue000", "x\ue000",
		"SCRAM-SHA-256$4096:IJPDpT/zYCtVVXhX/dUm2w==$yjQA5HCgnPZ82wMa8NWz+sasGWFl/aZwQcB9G7LYKJI=:RYlfXzV7DrcGXXdFZYtjP7cG5foYBML1aDljmR5OIwQ="},
}

func TestGoldenPostgresVerifiers(t *testing.T) {
	for _, g := range goldenPG {
		t.Run(g.name, func(t *testing.T) {
			pv, err := ParseVerifier(g.verifier)
			if err != nil {
				t.Fatalf("ParseVerifier: %v", err)
			}
			if got := pv.String(); got != g.verifier {
				t.Fatalf("round trip:\n got %s\nwant %s", got, g.verifier)
			}
			if got := string(preparePassword(g.password)); got != g.prepped {
				t.Errorf("preparePassword(%q) = %q, want %q", g.password, got, g.prepped)
			}
			v, err := newVerifierWithSalt(g.password, pv.Salt, pv.Iterations)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.String(); got != g.verifier {
				t.Errorf("verifier mismatch with PostgreSQL:\n got %s\nwant %s", got, g.verifier)
			}
			// Independent computation over the prepared password.
			if got := independentVerifier(g.prepped, pv.Salt, pv.Iterations); got != g.verifier {
				t.Errorf("independent computation mismatch:\n got %s\nwant %s", got, g.verifier)
			}
		})
	}
}

// independentVerifier computes a verifier with a hand-written PBKDF2 (one
// block, since dkLen == hLen) using only crypto/hmac and crypto/sha256.
func independentVerifier(prepped string, salt []byte, iterations int) string {
	mac := func(key, msg []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(msg)
		return m.Sum(nil)
	}
	block := binary.BigEndian.AppendUint32(append([]byte(nil), salt...), 1)
	u := mac([]byte(prepped), block)
	t := append([]byte(nil), u...)
	for i := 1; i < iterations; i++ {
		u = mac([]byte(prepped), u)
		for j := range t {
			t[j] ^= u[j]
		}
	}
	clientKey := mac(t, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	server := mac(t, []byte("Server Key"))
	e := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$" + itoa(iterations) + ":" + e(salt) + "$" + e(stored[:]) + ":" + e(server)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestSASLprep(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		// RFC 4013 section 3 examples.
		{"I\u00adX", "IX", nil},
		{"user", "user", nil},
		{"USER", "USER", nil},
		{"\u00aa", "a", nil},
		{"\u2168", "IX", nil},
		{"\u0627\u0031", "", errSASLprepProhibited},
		// RFC says prohibited; PostgreSQL's ASCII shortcut keeps it.
		{"\u0007", "\u0007", nil},
		{"", "", nil},
		{"\xff\xfe", "", errSASLprepInvalidUTF8},
		{"\xed\xa0\x80", "", errSASLprepInvalidUTF8}, // encoded surrogate
		{"\u00ad\u200d", "", errSASLprepProhibited},  // maps to empty
		{"a\u0085", "", errSASLprepProhibited},       // C.2.2
		{"a\U000E0001", "", errSASLprepProhibited},   // C.9 tag
		{"\u0627x\u0628", "", errSASLprepProhibited}, // RandAL + L
		{"\u0627\u0628", "\u0627\u0628", nil},
		{"a\u3000b", "a b", nil},
	}
	for _, tt := range tests {
		got, err := saslprep(tt.in)
		if err != tt.err || got != tt.want {
			t.Errorf("saslprep(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestRuneRangesSorted(t *testing.T) {
	for name, tbl := range map[string]runeRanges{
		"A1": tableA1Unassigned, "B1": tableB1MappedToNothing, "C12": tableC12NonASCIISpace,
		"prohibited": tableProhibitedOutput, "D1": tableD1RandALCat, "D2": tableD2LCat,
	} {
		for i, r := range tbl {
			if r[0] > r[1] || (i > 0 && tbl[i-1][1] >= r[0]) {
				t.Fatalf("table %s not sorted/disjoint at %d: %v", name, i, r)
			}
		}
	}
	if !tableD2LCat.contains('a') || tableD2LCat.contains('1') || !tableA1Unassigned.contains(0x0221) {
		t.Fatal("table lookup broken")
	}
}

func TestParseVerifier(t *testing.T) {
	const good = "SCRAM-SHA-256$4096:vg7hFUSi3X2I6BIYIxzfHQ==$zeswcC/WgsA0qmDxwVCi3t8kHmgtA4nahrP1EnJjehE=:LoixCsdZCQd/fxTbKqg0222kSCVYO5ANkgpn6hGq+TY="
	const salt = "vg7hFUSi3X2I6BIYIxzfHQ=="
	const keys = "zeswcC/WgsA0qmDxwVCi3t8kHmgtA4nahrP1EnJjehE=:LoixCsdZCQd/fxTbKqg0222kSCVYO5ANkgpn6hGq+TY="
	k32 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	k31 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 31))
	k33 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 33))

	goods := []string{
		good,
		"SCRAM-SHA-256$1:AA==$" + k32 + ":" + k32,
		"SCRAM-SHA-256$2147483647:c2FsdA==$" + k32 + ":" + k32,
		"SCRAM-SHA-256$4096:" + base64.StdEncoding.EncodeToString(make([]byte, 64)) + "$" + k32 + ":" + k32,
	}
	for _, s := range goods {
		v, err := ParseVerifier(s)
		if err != nil {
			t.Errorf("ParseVerifier(%q): %v", s, err)
			continue
		}
		if v.String() != s {
			t.Errorf("round trip: got %q want %q", v.String(), s)
		}
		if err := v.Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
	}
	v, _ := ParseVerifier(good)
	if v.Iterations != 4096 || len(v.Salt) != 16 || len(v.StoredKey) != 32 || len(v.ServerKey) != 32 {
		t.Errorf("parsed fields wrong: %+v", v)
	}

	bad := []struct{ name, s, errContains string }{
		{"empty", "", "does not start"},
		{"md5", "md5abcdef0123456789abcdef0123456789", "does not start"},
		{"lowercase prefix", strings.Replace(good, "SCRAM", "scram", 1), "does not start"},
		{"other mechanism", strings.Replace(good, "SHA-256", "SHA-1", 1), "does not start"},
		{"leading space", " " + good, "does not start"},
		{"no dollar", "SCRAM-SHA-256$4096:" + salt, `lacks "$"`},
		{"extra dollar", good + "$x", "too many"},
		{"params no colon", "SCRAM-SHA-256$4096" + salt + "$" + keys, "<iterations>:<salt>"},
		{"params extra colon", "SCRAM-SHA-256$4096:" + salt + ":x$" + keys, "<iterations>:<salt>"},
		{"keys no colon", "SCRAM-SHA-256$4096:" + salt + "$" + k32 + k32, "<StoredKey>:<ServerKey>"},
		{"keys extra colon", "SCRAM-SHA-256$4096:" + salt + "$" + keys + ":" + k32, "<StoredKey>:<ServerKey>"},
		{"iterations empty", "SCRAM-SHA-256$:" + salt + "$" + keys, "empty"},
		{"iterations zero", "SCRAM-SHA-256$0:" + salt + "$" + keys, "leading zeros"},
		{"iterations leading zero", "SCRAM-SHA-256$04096:" + salt + "$" + keys, "leading zeros"},
		{"iterations negative", "SCRAM-SHA-256$-1:" + salt + "$" + keys, "not a decimal"},
		{"iterations plus", "SCRAM-SHA-256$+4096:" + salt + "$" + keys, "not a decimal"},
		{"iterations space", "SCRAM-SHA-256$4096 :" + salt + "$" + keys, "not a decimal"},
		{"iterations hex", "SCRAM-SHA-256$0x10:" + salt + "$" + keys, "not a decimal"},
		{"iterations overflow int32", "SCRAM-SHA-256$2147483648:" + salt + "$" + keys, "out of range"},
		{"iterations huge", "SCRAM-SHA-256$99999999999999999999999:" + salt + "$" + keys, "out of range"},
		{"salt empty", "SCRAM-SHA-256$4096:$" + keys, "salt is empty"},
		{"salt bad char", "SCRAM-SHA-256$4096:vg7hFUSi3X2I6BIY!xzfHQ==$" + keys, "salt: invalid base64"},
		{"salt unpadded", "SCRAM-SHA-256$4096:vg7hFUSi3X2I6BIYIxzfHQ$" + keys, "salt: invalid base64"},
		{"salt url alphabet", "SCRAM-SHA-256$4096:vg7hFUSi3X2I6BIYIxzf_Q==$" + keys, "salt: invalid base64"},
		{"salt newline", "SCRAM-SHA-256$4096:vg7hFUSi3X2I\n6BIYIxzfHQ==$" + keys, "salt: invalid base64"},
		{"salt non-canonical padding bits", "SCRAM-SHA-256$4096:vg7hFUSi3X2I6BIYIxzfHR==$" + keys, "salt: invalid base64"},
		{"stored key short", "SCRAM-SHA-256$4096:" + salt + "$" + k31 + ":" + k32, "StoredKey is 31 bytes"},
		{"server key long", "SCRAM-SHA-256$4096:" + salt + "$" + k32 + ":" + k33, "ServerKey is 33 bytes"},
		{"stored key empty", "SCRAM-SHA-256$4096:" + salt + "$:" + k32, "StoredKey is 0 bytes"},
		{"server key bad base64", "SCRAM-SHA-256$4096:" + salt + "$" + k32 + ":@@@@", "ServerKey: invalid base64"},
		{"trailing newline", good + "\n", "ServerKey: invalid base64"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseVerifier(tt.s)
			if err == nil {
				t.Fatalf("ParseVerifier(%q) succeeded", tt.s)
			}
			if !strings.Contains(err.Error(), tt.errContains) {
				t.Fatalf("error %q does not contain %q", err, tt.errContains)
			}
		})
	}
}

func TestNewVerifier(t *testing.T) {
	v1, err := NewVerifier("secret", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Iterations != DefaultIterations || len(v1.Salt) != SaltLen {
		t.Fatalf("defaults: %+v", v1)
	}
	v2, err := NewVerifier("secret", 0)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(v1.Salt, v2.Salt) || bytes.Equal(v1.StoredKey, v2.StoredKey) {
		t.Fatal("two verifiers share a salt")
	}
	p, err := ParseVerifier(v1.String())
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != v1.String() || p.Iterations != v1.Iterations || !bytes.Equal(p.Salt, v1.Salt) ||
		!bytes.Equal(p.StoredKey, v1.StoredKey) || !bytes.Equal(p.ServerKey, v1.ServerKey) {
		t.Fatal("round trip through String/ParseVerifier changed the verifier")
	}
	v3, err := NewVerifier("secret", 10)
	if err != nil || v3.Iterations != 10 {
		t.Fatalf("iterations 10: %+v %v", v3, err)
	}
	if got := independentVerifier("secret", v3.Salt, 10); got != v3.String() {
		t.Fatalf("independent computation: got %s want %s", got, v3.String())
	}
	if _, err := NewVerifier("secret", -1); err == nil {
		t.Error("negative iterations accepted")
	}
	if _, err := NewVerifier("", 0); err == nil {
		t.Error("empty password accepted")
	}
	// Invalid UTF-8 is used raw, as PostgreSQL does.
	v4, err := NewVerifier("\xff\xfe", 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := independentVerifier("\xff\xfe", v4.Salt, 3); got != v4.String() {
		t.Fatalf("raw-bytes password: got %s want %s", got, v4.String())
	}
}

func TestVerifierValidate(t *testing.T) {
	k := make([]byte, 32)
	for _, v := range []Verifier{
		{},
		{Iterations: 0, Salt: []byte{1}, StoredKey: k, ServerKey: k},
		{Iterations: 1, StoredKey: k, ServerKey: k},
		{Iterations: 1, Salt: []byte{1}, StoredKey: k[:31], ServerKey: k},
		{Iterations: 1, Salt: []byte{1}, StoredKey: k, ServerKey: nil},
	} {
		if v.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", v)
		}
	}
}
