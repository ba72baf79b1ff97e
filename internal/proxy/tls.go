package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TLS on the endpoints: a client sends SSLRequest, the proxy answers 'S'
// and runs the handshake, and the startup packet follows encrypted
// (PostgreSQL's negotiation; "direct" TLS, a ClientHello as the first
// bytes, is not accepted). Which clients may stay in plaintext is the
// plaintext policy (Config.Plaintext).

// certLifetime is how long a generated certificate is valid.
const certLifetime = 10 * 365 * 24 * time.Hour

// EnsureCertificate generates a self-signed certificate and its key when
// either file is missing, and leaves them alone when both exist (they may
// be the user's own). The certificate names hosts (IP addresses as IP SANs,
// others as DNS names) plus localhost, 127.0.0.1 and ::1, and is its own CA,
// so clients can pass it as sslrootcert with sslmode=verify-full.
func EnsureCertificate(certFile, keyFile string, hosts []string) (created bool, err error) {
	haveCert, err := exists(certFile)
	if err != nil {
		return false, fmt.Errorf("proxy: tls_cert_file: %w", err)
	}
	haveKey, err := exists(keyFile)
	if err != nil {
		return false, fmt.Errorf("proxy: tls_key_file: %w", err)
	}
	if haveCert && haveKey {
		return false, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, fmt.Errorf("proxy certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return false, fmt.Errorf("proxy certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "holdfast proxy"},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock is a little behind
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	seen := map[string]bool{}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() || seen[ip.String()] {
				continue
			}
			seen[ip.String()] = true
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !seen[h] {
			seen[h] = true
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return false, fmt.Errorf("proxy certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, fmt.Errorf("proxy certificate: %w", err)
	}
	// The key first: a crash between the two leaves the certificate
	// missing, and the next run generates both again.
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return false, fmt.Errorf("proxy: tls_key_file: %w", err)
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return false, fmt.Errorf("proxy: tls_cert_file: %w", err)
	}
	return true, nil
}

// CertificateHosts returns the hosts of the endpoint addresses, for
// EnsureCertificate. An endpoint on all interfaces adds this machine's
// host name.
func CertificateHosts(addrs ...string) []string {
	var hosts []string
	for _, a := range addrs {
		if a == "" {
			continue
		}
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			if name, err := os.Hostname(); err == nil {
				hosts = append(hosts, name)
			}
			continue
		}
		hosts = append(hosts, h)
	}
	return hosts
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory and a rename, so a reader never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename this fails harmlessly
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// loadTLSIfPresent loads the certificate when its file exists, and returns
// nil, nil when it does not (SSLRequest is then declined).
func loadTLSIfPresent(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	ok, err := exists(certFile)
	if err != nil {
		return nil, fmt.Errorf("proxy: tls_cert_file: %w", err)
	}
	if !ok {
		return nil, nil
	}
	return LoadTLS(certFile, keyFile)
}

// LoadTLS reads the certificate and key the endpoints offer.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("proxy: tls_cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy: tls_key_file: %w", err)
	}
	if st, err := os.Stat(keyFile); err == nil && st.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("proxy: tls_key_file %s is mode %v: others may read it; make it 0600", keyFile, st.Mode().Perm())
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("proxy: tls_cert_file %s with tls_key_file %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		// Answer libpq 17's ALPN offer as PostgreSQL 17 does.
		NextProtos: []string{"postgresql"},
	}, nil
}

// startTLS answers an SSLRequest: 'N' when no certificate is configured,
// otherwise 'S' and the server side of the handshake, after which the
// session reads its startup packet from the TLS connection. It returns
// false when the session is over.
func (ss *session) startTLS() bool {
	if _, ok := ss.c.(*tls.Conn); ok {
		ss.fatal("08P01", "SSLRequest on a connection that already uses TLS")
		return false
	}
	if ss.s.cfg.TLS == nil {
		if _, err := ss.c.Write([]byte{'N'}); err != nil {
			ss.setCause(ss.readCause(err))
			return false
		}
		return true
	}
	if ss.plaintextBuffered() {
		// Bytes sent before the handshake were not encrypted and may have
		// been injected by a man in the middle (CVE-2021-23214): refuse,
		// as PostgreSQL does.
		ss.fatal("08P01", "received unencrypted data after SSL request")
		return false
	}
	if _, err := ss.c.Write([]byte{'S'}); err != nil {
		ss.setCause(ss.readCause(err))
		return false
	}
	// The startup deadline on the connection bounds the handshake.
	tc := tls.Server(ss.c, ss.s.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		ss.s.log.Debug("client tls handshake", "endpoint", ss.ep.name, "remote", ss.c.RemoteAddr().String(), "err", err)
		ss.setCause(ss.readCause(err))
		return false
	}
	ss.c = tc
	ss.be = pgproto3.NewBackend(tc, tc)
	ss.be.SetMaxBodyLen(ss.s.cfg.MaxMessageSize)
	return true
}

// plaintextBuffered reports whether the client sent bytes after its
// SSLRequest that pgproto3 has already read into its buffer. Those bytes
// would be lost with the old Backend (never interpreted), breaking the
// handshake in a confusing way; detecting them gives the client an error.
//
// pgproto3 exposes no buffered count, so this asks ss.be for another
// startup packet under an expired read deadline: the socket is not read
// (Go checks the deadline before the system call), so anything but a
// timeout means buffered bytes. Fewer than a packet header (1-3 bytes), or
// a valid header with an incomplete packet, also time out and go
// undetected; they are dropped all the same and the handshake then fails.
func (ss *session) plaintextBuffered() bool {
	if err := ss.c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return true
	}
	_, err := ss.be.ReceiveStartupMessage()
	// The original startup deadline is not recoverable from net.Conn: the
	// handshake gets a fresh one (at most once per session, since a second
	// SSLRequest is refused).
	_ = ss.c.SetReadDeadline(time.Now().Add(ss.s.cfg.StartupTimeout))
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// plaintextRefused ends a session that is not encrypted when the plaintext
// policy requires TLS from its client; it returns true when it did.
func (ss *session) plaintextRefused() bool {
	if _, ok := ss.c.(*tls.Conn); ok || PlaintextAllowed(ss.s.cfg.Plaintext, ss.c.RemoteAddr()) {
		return false
	}
	ss.fatal("28000", "holdfast proxy: TLS is required (connect with sslmode=require)")
	return true
}

// PlaintextAllowed reports whether the plaintext policy ("loopback",
// "always" or "never") lets a client at remote skip TLS. Loopback is
// 127.0.0.0/8 and ::1 (also IPv4-mapped). An unknown policy allows nothing.
func PlaintextAllowed(policy string, remote net.Addr) bool {
	switch policy {
	case "always":
		return true
	case "loopback":
		return isLoopback(remote)
	default:
		return false
	}
}

func isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case nil:
		return false
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
