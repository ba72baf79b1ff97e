package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestRFC7677Vector replays the SCRAM-SHA-256 exchange of RFC 7677 section 3.
func TestRFC7677Vector(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	v, err := newVerifierWithSalt("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(v, "user")
	s.fixedServerNonce = []byte("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
	sf, err := s.First("SCRAM-SHA-256", []byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
	if err != nil {
		t.Fatal(err)
	}
	const wantSF = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	if string(sf) != wantSF {
		t.Fatalf("server-first:\n got %s\nwant %s", sf, wantSF)
	}
	fin, err := s.Final([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if err != nil {
		t.Fatal(err)
	}
	const wantFin = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	if string(fin) != wantFin {
		t.Fatalf("server-final:\n got %s\nwant %s", fin, wantFin)
	}
	if !s.Authenticated() || s.ClientUser() != "user" || s.User() != "user" {
		t.Fatal("state after success wrong")
	}
}

// testClient is a minimal, independent SCRAM-SHA-256 client.
type testClient struct {
	password string
	gs2      string // "n,," or "y,,"
	nonce    string
	bare     string
	// filled by final
	serverSig string
}

func newTestClient(password, gs2 string) *testClient {
	c := &testClient{password: password, gs2: gs2, nonce: "fyko+d2lbbFgONRv9qkxdawL"}
	c.bare = "n=,r=" + c.nonce
	return c
}

func (c *testClient) first() []byte { return []byte(c.gs2 + c.bare) }

// finalParts returns the pieces of a correct client-final-message.
func (c *testClient) finalParts(t testing.TB, serverFirst []byte) (cbind, nonce, proof string) {
	t.Helper()
	parts := strings.Split(string(serverFirst), ",")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "r=") || !strings.HasPrefix(parts[1], "s=") || !strings.HasPrefix(parts[2], "i=") {
		t.Fatalf("bad server-first %q", serverFirst)
	}
	nonce = parts[0][2:]
	if !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce) {
		t.Fatalf("server nonce does not extend client nonce: %q", nonce)
	}
	salt, err := base64.StdEncoding.DecodeString(parts[1][2:])
	if err != nil {
		t.Fatal(err)
	}
	iters, err := strconv.Atoi(parts[2][2:])
	if err != nil {
		t.Fatal(err)
	}
	cbind = base64.StdEncoding.EncodeToString([]byte(c.gs2))
	withoutProof := "c=" + cbind + ",r=" + nonce
	salted, err := pbkdf2.Key(sha256.New, c.password, salt, iters, 32)
	if err != nil {
		t.Fatal(err)
	}
	authMsg := []byte(c.bare + "," + string(serverFirst) + "," + withoutProof)
	mac := func(k, m []byte) []byte { h := hmac.New(sha256.New, k); h.Write(m); return h.Sum(nil) }
	ck := mac(salted, []byte("Client Key"))
	sk := sha256.Sum256(ck)
	sig := mac(sk[:], authMsg)
	p := make([]byte, 32)
	for i := range p {
		p[i] = ck[i] ^ sig[i]
	}
	c.serverSig = "v=" + base64.StdEncoding.EncodeToString(mac(mac(salted, []byte("Server Key")), authMsg))
	return cbind, nonce, base64.StdEncoding.EncodeToString(p)
}

func (c *testClient) final(t testing.TB, serverFirst []byte) []byte {
	cb, n, p := c.finalParts(t, serverFirst)
	return []byte("c=" + cb + ",r=" + n + ",p=" + p)
}

func mustVerifier(t testing.TB, pw string, iters int) Verifier {
	t.Helper()
	v, err := NewVerifier(pw, iters)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestExchange(t *testing.T) {
	v := mustVerifier(t, "secret", 16)
	for _, gs2 := range []string{"n,,", "y,,"} {
		for _, pw := range []string{"secret", "wrong", ""} {
			t.Run(gs2+pw, func(t *testing.T) {
				s := NewServer(v, "app")
				if m := s.Mechanisms(); len(m) != 1 || m[0] != "SCRAM-SHA-256" {
					t.Fatalf("Mechanisms = %v", m)
				}
				c := newTestClient(pw, gs2)
				first := c.first()
				sf, err := s.First("SCRAM-SHA-256", first)
				if err != nil {
					t.Fatal(err)
				}
				// Server must not keep references to caller buffers.
				for i := range first {
					first[i] = 'X'
				}
				final := c.final(t, sf)
				sf[0] = 'X'
				fin, err := s.Final(final)
				if pw != "secret" {
					if !errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrProtocol) || fin != nil || s.Authenticated() {
						t.Fatalf("wrong password: fin=%q err=%v", fin, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if string(fin) != c.serverSig || !s.Authenticated() {
					t.Fatalf("server-final %q, want %q", fin, c.serverSig)
				}
			})
		}
	}
}

func TestExchangeIgnoresExtensionsAndUsername(t *testing.T) {
	v := mustVerifier(t, "secret", 16)
	s := NewServer(v, "app")
	c := newTestClient("secret", "n,,")
	c.bare = "n=someone=2Celse,r=" + c.nonce + ",x=ext"
	sf, err := s.First("SCRAM-SHA-256", c.first())
	if err != nil {
		t.Fatal(err)
	}
	if s.ClientUser() != "someone=2Celse" {
		t.Fatalf("ClientUser = %q", s.ClientUser())
	}
	// An extension in the final message is part of the AuthMessage.
	_, n, _ := c.finalParts(t, sf)
	final := finalWithExtension(t, c, sf, n, "z=ext")
	if _, err := s.Final(final); err != nil {
		t.Fatal(err)
	}
}

func finalWithExtension(t *testing.T, c *testClient, serverFirst []byte, nonce, ext string) []byte {
	t.Helper()
	parts := strings.Split(string(serverFirst), ",")
	salt, _ := base64.StdEncoding.DecodeString(parts[1][2:])
	iters, _ := strconv.Atoi(parts[2][2:])
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(c.gs2)) + ",r=" + nonce + "," + ext
	salted, _ := pbkdf2.Key(sha256.New, c.password, salt, iters, 32)
	mac := func(k, m []byte) []byte { h := hmac.New(sha256.New, k); h.Write(m); return h.Sum(nil) }
	ck := mac(salted, []byte("Client Key"))
	sk := sha256.Sum256(ck)
	sig := mac(sk[:], []byte(c.bare+","+string(serverFirst)+","+withoutProof))
	for i := range sig {
		sig[i] ^= ck[i]
	}
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(sig))
}

func TestFirstProtocolErrors(t *testing.T) {
	v := mustVerifier(t, "secret", 16)
	tests := []struct{ name, mech, msg, reason string }{
		{"plus mechanism", "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc", "channel binding is not supported"},
		{"unknown mechanism", "SCRAM-SHA-1", "n,,n=,r=abc", "unsupported SASL mechanism"},
		{"empty mechanism", "", "n,,n=,r=abc", "unsupported SASL mechanism"},
		{"empty message", "SCRAM-SHA-256", "", "empty client-first-message"},
		{"flag p", "SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc", "requires channel binding"},
		{"flag unknown", "SCRAM-SHA-256", "x,,n=,r=abc", "invalid gs2 channel-binding flag"},
		{"flag only", "SCRAM-SHA-256", "n", `expected ","`},
		{"flag no comma", "SCRAM-SHA-256", "nn=,r=abc", `expected ","`},
		{"header truncated", "SCRAM-SHA-256", "n,", `ending the gs2 header`},
		{"authzid", "SCRAM-SHA-256", "n,a=admin,n=,r=abc", "authorization identity"},
		{"header junk", "SCRAM-SHA-256", "n,x,n=,r=abc", "ending the gs2 header"},
		{"bare empty", "SCRAM-SHA-256", "n,,", "empty message"},
		{"mandatory ext", "SCRAM-SHA-256", "n,,m=foo,n=,r=abc", "mandatory extension"},
		{"nonce first", "SCRAM-SHA-256", "n,,r=abc,n=", "expected username"},
		{"username only", "SCRAM-SHA-256", "n,,n=", "expected nonce"},
		{"empty nonce", "SCRAM-SHA-256", "n,,n=,r=", "empty nonce"},
		{"nonce space", "SCRAM-SHA-256", "n,,n=,r=a b", "non-printable"},
		{"nonce del", "SCRAM-SHA-256", "n,,n=,r=a\x7f", "non-printable"},
		{"nonce non-ascii", "SCRAM-SHA-256", "n,,n=,r=aé", "non-printable"},
		{"trailing comma", "SCRAM-SHA-256", "n,,n=,r=abc,", "malformed attribute"},
		{"junk attribute", "SCRAM-SHA-256", "n,,n=,r=abc,x", "malformed attribute"},
		{"non-alpha key", "SCRAM-SHA-256", "n,,n=,r=abc,1=x", "invalid attribute name"},
		{"duplicate nonce", "SCRAM-SHA-256", "n,,n=,r=abc,r=def", "unexpected attribute"},
		{"empty extension", "SCRAM-SHA-256", "n,,n=,r=abc,x=", "unexpected attribute"},
		{"space before n", "SCRAM-SHA-256", "n,, n=,r=abc", "malformed attribute"},
		{"NUL", "SCRAM-SHA-256", "n,,n=\x00,r=abc", "NUL"},
		{"invalid utf8", "SCRAM-SHA-256", "n,,n=\xff,r=abc", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(v, "app")
			sf, err := s.First(tt.mech, []byte(tt.msg))
			if !errors.Is(err, ErrProtocol) || sf != nil {
				t.Fatalf("First(%q, %q) = %q, %v; want ErrProtocol", tt.mech, tt.msg, sf, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q does not mention %q", err, tt.reason)
			}
			// The server is dead after an error.
			if _, err := s.Final([]byte("c=biws,r=x,p=x")); !errors.Is(err, ErrProtocol) {
				t.Fatalf("Final after failed First: %v", err)
			}
		})
	}
}

func TestFinalProtocolErrors(t *testing.T) {
	v := mustVerifier(t, "secret", 16)
	p31 := base64.StdEncoding.EncodeToString(make([]byte, 31))
	tests := []struct {
		name   string
		gs2    string
		build  func(cb, n, p string) string
		reason string
	}{
		{"empty", "n,,", func(cb, n, p string) string { return "" }, "empty message"},
		{"order r before c", "n,,", func(cb, n, p string) string { return "r=" + n + ",c=" + cb + ",p=" + p }, "expected channel-binding"},
		{"missing c", "n,,", func(cb, n, p string) string { return "r=" + n + ",p=" + p }, "expected channel-binding"},
		{"cbind y but flag n", "n,,", func(cb, n, p string) string { return "c=eSws,r=" + n + ",p=" + p }, "does not match the gs2 header"},
		{"cbind n but flag y", "y,,", func(cb, n, p string) string { return "c=biws,r=" + n + ",p=" + p }, "does not match the gs2 header"},
		{"cbind with data", "n,,", func(cb, n, p string) string {
			return "c=" + base64.StdEncoding.EncodeToString([]byte("n,,xyz")) + ",r=" + n + ",p=" + p
		}, "does not match"},
		{"cbind bad base64", "n,,", func(cb, n, p string) string { return "c=bi!s,r=" + n + ",p=" + p }, "invalid base64"},
		{"cbind unpadded", "n,,", func(cb, n, p string) string { return "c=biw,r=" + n + ",p=" + p }, "invalid base64"},
		{"cbind empty", "n,,", func(cb, n, p string) string { return "c=,r=" + n + ",p=" + p }, "does not match"},
		{"missing nonce", "n,,", func(cb, n, p string) string { return "c=" + cb + ",p=" + p }, "expected nonce"},
		{"client nonce only", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=fyko+d2lbbFgONRv9qkxdawL,p=" + p }, "nonce does not match"},
		{"nonce altered", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n[:len(n)-1] + alter(n[len(n)-1]) + ",p=" + p }, "nonce does not match"},
		{"nonce extended", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + "A,p=" + p }, "nonce does not match"},
		{"missing proof", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n }, "expected proof"},
		{"proof not last", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",p=" + p + ",x=y" }, "expected proof"},
		{"duplicate proof", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",p=" + p + ",p=" + p }, "unexpected attribute"},
		{"duplicate c", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",c=" + cb + ",p=" + p }, "unexpected attribute"},
		{"empty extension", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",x=,p=" + p }, "unexpected attribute"},
		{"proof short", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",p=" + p31 }, "proof is 31 bytes"},
		{"proof empty", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",p=" }, "proof is 0 bytes"},
		{"proof bad base64", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",p=" + p[:len(p)-2] + "!!" }, "invalid base64"},
		{"proof with newline", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",p=" + p[:4] + "\n" + p[4:] }, "invalid base64"},
		{"trailing comma", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",p=" + p + "," }, "malformed attribute"},
		{"NUL", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",p=" + p + "\x00" }, "NUL"},
		{"invalid utf8", "n,,", func(cb, n, p string) string { return "c=" + cb + ",r=" + n + ",x=\xc3,p=" + p }, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(v, "app")
			c := newTestClient("secret", tt.gs2)
			sf, err := s.First("SCRAM-SHA-256", c.first())
			if err != nil {
				t.Fatal(err)
			}
			cb, n, p := c.finalParts(t, sf)
			msg := tt.build(cb, n, p)
			fin, err := s.Final([]byte(msg))
			if !errors.Is(err, ErrProtocol) || fin != nil || s.Authenticated() {
				t.Fatalf("Final(%q) = %q, %v; want ErrProtocol", msg, fin, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q does not mention %q", err, tt.reason)
			}
		})
	}
}

func TestSequenceErrors(t *testing.T) {
	v := mustVerifier(t, "secret", 16)
	c := newTestClient("secret", "n,,")

	s := NewServer(v, "app")
	if _, err := s.Final([]byte("c=biws,r=a,p=a")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Final before First: %v", err)
	}

	s = NewServer(v, "app")
	if _, err := s.First(Mechanism, c.first()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.First(Mechanism, c.first()); !errors.Is(err, ErrProtocol) {
		t.Fatalf("second First: %v", err)
	}

	s = NewServer(v, "app")
	sf, err := s.First(Mechanism, c.first())
	if err != nil {
		t.Fatal(err)
	}
	final := c.final(t, sf)
	if _, err := s.Final(final); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Final(final); !errors.Is(err, ErrProtocol) {
		t.Fatalf("replayed Final: %v", err)
	}

	// A failed password attempt also ends the exchange.
	s = NewServer(v, "app")
	sf, _ = s.First(Mechanism, c.first())
	bad := newTestClient("nope", "n,,").final(t, sf)
	if _, err := s.Final(bad); !errors.Is(err, ErrAuthFailed) {
		t.Fatal(err)
	}
	if _, err := s.Final(c.final(t, sf)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Final after failure: %v", err)
	}
}

func TestNonceIsFreshAndPrintable(t *testing.T) {
	v := mustVerifier(t, "secret", 16)
	c := newTestClient("secret", "n,,")
	seen := map[string]bool{}
	for range 20 {
		s := NewServer(v, "app")
		sf, err := s.First(Mechanism, c.first())
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimPrefix(strings.Split(string(sf), ",")[0], "r="+c.nonce)
		if len(n) != 24 || !printable([]byte(n)) || seen[n] {
			t.Fatalf("bad server nonce %q", n)
		}
		seen[n] = true
	}
}

func TestMockServer(t *testing.T) {
	secret := []byte("cluster-secret")
	c := newTestClient("whatever", "n,,")
	s1 := NewMockServer("ghost", secret, 0)
	sf1, err := s1.First(Mechanism, c.first())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Final(c.final(t, sf1)); !errors.Is(err, ErrAuthFailed) || s1.Authenticated() {
		t.Fatalf("mock Final: %v", err)
	}
	// Same user, same secret: same salt and iterations (no user-existence oracle).
	s2 := NewMockServer("ghost", secret, 0)
	sf2, _ := s2.First(Mechanism, c.first())
	tail := func(b []byte) string { return string(b[strings.Index(string(b), ",s="):]) }
	if tail(sf1) != tail(sf2) || !strings.HasSuffix(string(sf1), ",i=4096") {
		t.Fatalf("mock salt not stable: %q vs %q", sf1, sf2)
	}
	s3 := NewMockServer("other", secret, 0)
	sf3, _ := s3.First(Mechanism, c.first())
	if tail(sf1) == tail(sf3) {
		t.Fatal("mock salt does not depend on user")
	}
	// Malformed input is still a protocol error in mock mode.
	s4 := NewMockServer("ghost", secret, 0)
	if _, err := s4.First(Mechanism, []byte("garbage")); !errors.Is(err, ErrProtocol) {
		t.Fatal(err)
	}
}

func TestInvalidVerifierRunsMock(t *testing.T) {
	v := mustVerifier(t, "secret", 16)
	v.StoredKey = v.StoredKey[:10]
	s := NewServer(v, "app")
	c := newTestClient("secret", "n,,")
	sf, err := s.First(Mechanism, c.first())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Final(c.final(t, sf))
	if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("got %v", err)
	}
	if bytes.Contains(sf, []byte(base64.StdEncoding.EncodeToString(v.Salt))) {
		t.Fatal("invalid verifier's salt leaked")
	}
}

// alter returns a nonce character different from c (a fixed replacement
// would equal the random last character one time in 64).
func alter(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
