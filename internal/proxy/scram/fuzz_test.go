package scram

import (
	"errors"
	"testing"
)

func FuzzParseVerifier(f *testing.F) {
	for _, g := range goldenPG {
		f.Add(g.verifier)
	}
	f.Add("")
	f.Add("SCRAM-SHA-256$")
	f.Add("SCRAM-SHA-256$1:AA==$:")
	f.Add("SCRAM-SHA-256$4096:vg7hFUSi3X2I6BIYIxzfHR==$zeswcC/WgsA0qmDxwVCi3t8kHmgtA4nahrP1EnJjehE=:LoixCsdZCQd/fxTbKqg0222kSCVYO5ANkgpn6hGq+TY=")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVerifier(s)
		if err != nil {
			return
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("ParseVerifier(%q) accepted an invalid verifier: %v", s, err)
		}
		// The accepted syntax is canonical: exact round trip.
		if got := v.String(); got != s {
			t.Fatalf("round trip: %q -> %q", s, got)
		}
	})
}

// fuzzVerifier uses few iterations; the server never runs PBKDF2 anyway.
func fuzzVerifier(f *testing.F) Verifier {
	v, err := newVerifierWithSalt("secret", []byte("0123456789abcdef"), 2)
	if err != nil {
		f.Fatal(err)
	}
	return v
}

func FuzzServerFirst(f *testing.F) {
	v := fuzzVerifier(f)
	f.Add("SCRAM-SHA-256", []byte("n,,n=,r=fyko+d2lbbFgONRv9qkxdawL"))
	f.Add("SCRAM-SHA-256", []byte("y,,n=user,r=abc,x=ext"))
	f.Add("SCRAM-SHA-256", []byte("p=tls-server-end-point,,n=,r=abc"))
	f.Add("SCRAM-SHA-256-PLUS", []byte("n,,n=,r=abc"))
	f.Add("SCRAM-SHA-256", []byte("n,a=x,n=,r=abc"))
	f.Add("SCRAM-SHA-256", []byte("n,,m=x,n=,r=abc"))
	f.Add("SCRAM-SHA-256", []byte(""))
	f.Fuzz(func(t *testing.T, mech string, msg []byte) {
		s := NewServer(v, "app")
		sf, err := s.First(mech, msg)
		if err != nil {
			if !errors.Is(err, ErrProtocol) || sf != nil {
				t.Fatalf("First error not ErrProtocol: %v", err)
			}
			return
		}
		if len(sf) == 0 {
			t.Fatal("empty server-first-message")
		}
		// Whatever was accepted, a garbage final must not panic or succeed.
		if _, err := s.Final(msg); err == nil {
			t.Fatal("client-first accepted as client-final")
		}
	})
}

func FuzzServerFinal(f *testing.F) {
	v := fuzzVerifier(f)
	const clientFirst = "n,,n=,r=fyko+d2lbbFgONRv9qkxdawL"
	const serverNonce = "3rfcNHYJY1ZVvWVs7j"
	newServer := func() *Server {
		s := NewServer(v, "app")
		s.fixedServerNonce = []byte(serverNonce)
		if _, err := s.First(Mechanism, []byte(clientFirst)); err != nil {
			f.Fatal(err)
		}
		return s
	}
	// Seed with a valid client-final-message.
	seed := newServer()
	c := newTestClient("secret", "n,,")
	valid := c.final(f, seed.serverFirst)
	if _, err := seed.Final(valid); err != nil {
		f.Fatalf("seed final invalid: %v", err)
	}
	f.Add(valid)
	f.Add(newTestClient("wrong", "n,,").final(f, seed.serverFirst))
	f.Add([]byte("c=biws,r=fyko+d2lbbFgONRv9qkxdawL" + serverNonce + ",x=1,p=AAAA"))
	f.Add([]byte("c=eSws,r=x,p="))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, msg []byte) {
		s := newServer()
		fin, err := s.Final(msg)
		switch {
		case err == nil:
			if !s.Authenticated() || len(fin) == 0 {
				t.Fatal("success without authentication")
			}
		case errors.Is(err, ErrAuthFailed), errors.Is(err, ErrProtocol):
			if fin != nil || s.Authenticated() {
				t.Fatal("failure returned a server-final-message")
			}
		default:
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}
