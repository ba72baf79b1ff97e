package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/testutil"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	certFile, keyFile := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	created, err := proxy.EnsureCertificate(certFile, keyFile, []string{"db.example.com", "10.1.2.3", "", "0.0.0.0", "127.0.0.1"})
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v", created, err)
	}
	for f, want := range map[string]fs.FileMode{keyFile: 0o600, certFile: 0o644} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", f, st.Mode().Perm(), want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("want only the certificate and key in %s, found %d entries", dir, len(ents))
	}

	c := readCert(t, certFile)
	roots := x509.NewCertPool()
	roots.AddCert(c)
	for _, host := range []string{"127.0.0.1", "::1", "localhost", "db.example.com", "10.1.2.3"} {
		if _, err := c.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify for %s with itself as root: %v", host, err)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{DNSName: "other.example.com", Roots: roots}); err == nil {
		t.Error("the certificate verifies for a host it does not name")
	}
	if c.Subject.CommonName != "holdfast proxy" || !c.IsCA || c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("subject %q, CA %v, key usage %v", c.Subject.CommonName, c.IsCA, c.KeyUsage)
	}
	if c.NotBefore.After(time.Now()) || c.NotAfter.Before(time.Now().AddDate(9, 11, 0)) {
		t.Errorf("validity %s to %s", c.NotBefore, c.NotAfter)
	}
	for _, ip := range c.IPAddresses {
		if ip.IsUnspecified() {
			t.Errorf("unspecified address %s among the SANs", ip)
		}
	}
	if _, err := proxy.LoadTLS(certFile, keyFile); err != nil {
		t.Fatalf("load the generated pair: %v", err)
	}

	// Idempotent: the second call keeps the files byte for byte.
	cert1, _ := os.ReadFile(certFile)
	key1, _ := os.ReadFile(keyFile)
	if created, err := proxy.EnsureCertificate(certFile, keyFile, nil); err != nil || created {
		t.Fatalf("second call: created=%v err=%v", created, err)
	}
	cert2, _ := os.ReadFile(certFile)
	key2, _ := os.ReadFile(keyFile)
	if !bytes.Equal(cert1, cert2) || !bytes.Equal(key1, key2) {
		t.Error("the second call changed the files")
	}

	// A missing half is regenerated with a new key.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if created, err := proxy.EnsureCertificate(certFile, keyFile, nil); err != nil || !created {
		t.Fatalf("after removing the certificate: created=%v err=%v", created, err)
	}
	if key3, _ := os.ReadFile(keyFile); bytes.Equal(key1, key3) {
		t.Error("the key was kept for a new certificate")
	}
	if _, err := proxy.LoadTLS(certFile, keyFile); err != nil {
		t.Fatalf("load the regenerated pair: %v", err)
	}

	// A user's own files are never touched, whatever they hold.
	own := filepath.Join(t.TempDir(), "own")
	for _, f := range []string{own + ".crt", own + ".key"} {
		if err := os.WriteFile(f, []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if created, err := proxy.EnsureCertificate(own+".crt", own+".key", nil); err != nil || created {
		t.Fatalf("user's files: created=%v err=%v", created, err)
	}
	if b, _ := os.ReadFile(own + ".crt"); string(b) != "mine" {
		t.Error("the user's certificate was replaced")
	}
}

func TestLoadTLSErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	if _, err := proxy.EnsureCertificate(certFile, keyFile, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := proxy.LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 1 {
		t.Errorf("MinVersion %x, %d certificates", cfg.MinVersion, len(cfg.Certificates))
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.key")
	b, _ := os.ReadFile(keyFile)
	if err := os.WriteFile(loose, b, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tt := range []struct {
		name, cert, key string
		names           []string
		notExist        bool
	}{
		{"missing certificate", missing, keyFile, []string{missing}, true},
		{"missing key", certFile, missing, []string{missing}, true},
		{"bad certificate", garbage, keyFile, []string{garbage, keyFile}, false},
		{"bad key", certFile, garbage, []string{certFile, garbage}, false},
		{"world-readable key", certFile, loose, []string{loose}, false},
	} {
		_, err := proxy.LoadTLS(tt.cert, tt.key)
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		if errors.Is(err, fs.ErrNotExist) != tt.notExist {
			t.Errorf("%s: errors.Is(err, fs.ErrNotExist) = %v: %v", tt.name, !tt.notExist, err)
		}
		for _, n := range tt.names {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%s: error does not name %s: %v", tt.name, n, err)
			}
		}
	}
}

func TestTLSPlaintextPolicy(t *testing.T) {
	tcp := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 5000} }
	for _, tt := range []struct {
		addr                        net.Addr
		loopback, always, never, xx bool
	}{
		{tcp("127.0.0.1"), true, true, false, false},
		{tcp("127.8.9.10"), true, true, false, false},
		{tcp("::1"), true, true, false, false},
		{tcp("::ffff:127.0.0.1"), true, true, false, false},
		{tcp("10.0.0.1"), false, true, false, false},
		{tcp("128.0.0.1"), false, true, false, false},
		{tcp("2001:db8::1"), false, true, false, false},
		{tcp("::"), false, true, false, false},
		{&net.UnixAddr{Name: "/tmp/sock", Net: "unix"}, false, true, false, false},
		{nil, false, true, false, false},
	} {
		for policy, want := range map[string]bool{"loopback": tt.loopback, "always": tt.always, "never": tt.never, "": tt.xx} {
			if got := proxy.PlaintextAllowed(policy, tt.addr); got != want {
				t.Errorf("PlaintextAllowed(%q, %v) = %v, want %v", policy, tt.addr, got, want)
			}
		}
	}
}

func TestCertificateHosts(t *testing.T) {
	name, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	got := proxy.CertificateHosts("127.0.0.1:6432", ":6433", "[::]:1", "db.example.com:5", "", "bad")
	want := []string{"127.0.0.1", name, name, "db.example.com"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// tlsFixture is a cluster with a proxy that offers TLS.
func tlsFixture(t *testing.T) (f *fixture, certFile string, tc *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	if _, err := proxy.EnsureCertificate(certFile, keyFile, nil); err != nil {
		t.Fatal(err)
	}
	tc, err := proxy.LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return startWith(t, func(c *proxy.Config) { c.TLS = tc }), certFile, tc
}

func (f *fixture) url(addr, query string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(f.app.User, f.app.Password), Host: addr, Path: "/" + f.app.Database, RawQuery: "connect_timeout=5&" + query}
	return u.String()
}

func isTLS(c *pgx.Conn) bool {
	_, ok := c.PgConn().Conn().(*tls.Conn)
	return ok
}

// sslRequest is the 8-byte SSLRequest packet.
var sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

// readErrorCode reads until the proxy closes and returns the SQLSTATE of
// the ErrorResponse it sent ("" if none).
func readErrorCode(t *testing.T, r io.Reader) string {
	t.Helper()
	b, _ := io.ReadAll(r)
	if len(b) == 0 || b[0] != 'E' {
		return fmt.Sprintf("no ErrorResponse: %q", b)
	}
	i := bytes.Index(b, []byte{0, 'C'})
	if i < 0 {
		return fmt.Sprintf("no SQLSTATE: %q", b)
	}
	code, _, _ := bytes.Cut(b[i+2:], []byte{0})
	return string(code)
}

func TestProxyTLS(t *testing.T) {
	f, certFile, tlsConfig := tlsFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	writer := f.px.Addr("writer")

	t.Run("require", func(t *testing.T) {
		for _, ep := range []string{"writer", "reader"} {
			var c *pgx.Conn
			// A replica may not have replayed the app role yet (28P01).
			testutil.Eventually(t, 30*time.Second, ep+" connection", func() (err error) {
				c, err = pgx.Connect(ctx, f.url(f.px.Addr(ep), "sslmode=require"))
				return err
			})
			var one int
			if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Errorf("%s: SELECT 1 = %d, %v", ep, one, err)
			}
			if tc, ok := c.PgConn().Conn().(*tls.Conn); !ok || !tc.ConnectionState().HandshakeComplete {
				t.Errorf("%s: the client connection is %T, not TLS", ep, c.PgConn().Conn())
			}
			c.Close(ctx)
		}
	})

	t.Run("verify-full", func(t *testing.T) {
		c, err := pgx.Connect(ctx, f.url(writer, "sslmode=verify-full&sslrootcert="+url.QueryEscape(certFile)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil || !isTLS(c) {
			t.Fatalf("tls %v, %v", isTLS(c), err)
		}
		// Idle, the session is parked (the relay waits with a read
		// deadline, which TLS survives); it then works as before.
		testutil.Eventually(t, 15*time.Second, "TLS client parked", func() error {
			if n := f.px.Status().Parked["writer"]; n < 1 {
				return fmt.Errorf("parked = %d", n)
			}
			return nil
		})
		var v int
		if err := c.QueryRow(ctx, "SELECT 6 * 7").Scan(&v); err != nil || v != 42 {
			t.Fatalf("after parking: %d, %v", v, err)
		}
		// Another certificate as root: refused.
		dir := t.TempDir()
		other := filepath.Join(dir, "other.crt")
		if _, err := proxy.EnsureCertificate(other, filepath.Join(dir, "other.key"), nil); err != nil {
			t.Fatal(err)
		}
		if c, err := pgx.Connect(ctx, f.url(writer, "sslmode=verify-full&sslrootcert="+url.QueryEscape(other))); err == nil {
			c.Close(ctx)
			t.Fatal("verify-full accepted a certificate signed by another root")
		}
	})

	t.Run("psql verify-full", func(t *testing.T) {
		// libpq (OpenSSL) must accept the certificate too, and the ALPN.
		psql, err := exec.LookPath("psql")
		if err != nil {
			t.Skip("psql is not installed")
		}
		host, port, _ := net.SplitHostPort(writer)
		cmd := exec.CommandContext(ctx, psql, "-XAtc", "SELECT 41 + 1",
			fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=verify-full sslrootcert=%s", host, port, f.app.User, f.app.Database, certFile))
		cmd.Env = append(os.Environ(), "PGPASSWORD="+f.app.Password, "PGCONNECT_TIMEOUT=5")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "42" {
			t.Fatalf("psql: %v: %s", err, out)
		}
	})

	t.Run("disable from loopback", func(t *testing.T) {
		c, err := pgx.Connect(ctx, f.url(writer, "sslmode=disable"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil || isTLS(c) {
			t.Fatalf("tls %v, %v", isTLS(c), err)
		}
	})

	dial := func(t *testing.T) net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", writer, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	handshake := func(t *testing.T, c net.Conn) *tls.Conn {
		t.Helper()
		if _, err := c.Write(sslRequest); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'S' {
			t.Fatalf("SSLRequest answered %q, %v", b, err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(readCert(t, certFile))
		tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return tc
	}

	t.Run("GSSENCRequest declined then TLS", func(t *testing.T) {
		c := dial(t)
		if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'N' {
			t.Fatalf("GSSENCRequest answered %q, %v", b, err)
		}
		tc := handshake(t, c)
		fe := pgproto3.NewFrontend(tc, tc)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": f.app.User, "database": f.app.Database}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		msg, err := fe.Receive()
		if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok {
			t.Fatalf("startup over TLS answered %T, %v", msg, err)
		}
	})

	t.Run("second SSLRequest inside TLS", func(t *testing.T) {
		tc := handshake(t, dial(t))
		if _, err := tc.Write(sslRequest); err != nil {
			t.Fatal(err)
		}
		if code := readErrorCode(t, tc); code != "08P01" {
			t.Fatalf("got %s, want 08P01", code)
		}
	})

	t.Run("unencrypted data after SSLRequest", func(t *testing.T) {
		// A StartupMessage pipelined behind the SSLRequest, as a man in the
		// middle would inject it: refused, never read as if encrypted.
		c := dial(t)
		startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": f.app.User}}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(append(append([]byte{}, sslRequest...), startup...)); err != nil {
			t.Fatal(err)
		}
		if code := readErrorCode(t, c); code != "08P01" {
			t.Fatalf("got %s, want 08P01", code)
		}
	})

	t.Run("garbage instead of a ClientHello", func(t *testing.T) {
		random := make([]byte, 2048)
		_, _ = rand.Read(random)
		for _, garbage := range [][]byte{
			[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
			{0x16, 0x03, 0x01, 0x40, 0x00, 1, 2, 3}, // a record header promising more than comes
			{0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff},
			random,
			nil,
		} {
			c := dial(t)
			if _, err := c.Write(sslRequest); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil || b[0] != 'S' {
				t.Fatalf("SSLRequest answered %q, %v", b, err)
			}
			_, _ = c.Write(garbage)
			_ = c.(*net.TCPConn).CloseWrite()
			// The proxy must close its side well before our deadline.
			if _, err := io.Copy(io.Discard, c); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("garbage %q: the proxy did not close the connection", garbage[:min(len(garbage), 16)])
				}
			}
			c.Close()
		}
	})

	// Every session above has ended: nothing leaked.
	testutil.Eventually(t, 10*time.Second, "client sessions to end", func() error {
		if n := f.px.Stats().Clients["writer"] + f.px.Stats().Clients["reader"]; n != 0 {
			return fmt.Errorf("%d client sessions still open", n)
		}
		return nil
	})
	c, err := pgx.Connect(ctx, f.url(writer, "sslmode=require"))
	if err != nil {
		t.Fatalf("the proxy stopped serving after bad input: %v", err)
	}
	c.Close(ctx)

	t.Run("plaintext never", func(t *testing.T) {
		px := f.newProxy(t, func(c *proxy.Config) { c.TLS, c.Plaintext = tlsConfig, "never" })
		_, err := pgx.Connect(ctx, f.url(px.Addr("writer"), "sslmode=disable"))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28000" {
			t.Fatalf("plaintext client: got %v, want SQLSTATE 28000", err)
		}
		for _, mode := range []string{"require", "prefer"} {
			c, err := pgx.Connect(ctx, f.url(px.Addr("writer"), "sslmode="+mode))
			if err != nil {
				t.Fatalf("sslmode=%s: %v", mode, err)
			}
			if _, err := c.Exec(ctx, "SELECT 1"); err != nil || !isTLS(c) {
				t.Errorf("sslmode=%s: tls %v, %v", mode, isTLS(c), err)
			}
			c.Close(ctx)
		}
	})
}
