package scram

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

var (
	// ErrAuthFailed is returned by Final when the client's proof does not
	// match (wrong password), and for mock exchanges. The proxy should answer
	// with ErrorResponse 28P01 "password authentication failed for user ...".
	ErrAuthFailed = errors.New("scram: authentication failed")
	// ErrProtocol is wrapped (with a reason) by every error caused by a
	// malformed or out-of-sequence client message. The proxy should answer
	// with ErrorResponse 08P01 (protocol_violation) and close the connection.
	ErrProtocol = errors.New("scram: protocol violation")
)

// serverNonceLen is the raw length of the server nonce (PostgreSQL's
// SCRAM_RAW_NONCE_LEN); it is sent base64-encoded (24 characters).
const serverNonceLen = 18

type serverState int

const (
	stateInit serverState = iota
	stateFirstDone
	stateDone
	stateFailed
)

// Server conducts one SCRAM-SHA-256 exchange with one client. It is not safe
// for concurrent use, and it is single-use: after Final (or any error) it
// refuses further messages.
//
// The expected sequence is:
//
//	send AuthenticationSASL{AuthMechanisms: s.Mechanisms()}
//	recv SASLInitialResponse -> s.First(mech, data) -> send AuthenticationSASLContinue
//	recv SASLResponse        -> s.Final(data)       -> send AuthenticationSASLFinal, AuthenticationOk
//
// Server copies whatever it keeps, so callers may pass buffers that are
// reused afterwards (as pgproto3's decoded messages are).
type Server struct {
	v          Verifier
	lookupUser string
	// failReason, when non-nil, makes the exchange a mock one: it runs to
	// completion with plausible messages and then fails with ErrAuthFailed
	// wrapping this reason.
	failReason error

	state           serverState
	authenticated   bool
	clientUser      string
	gs2Header       []byte
	clientFirstBare []byte
	serverFirst     []byte
	nonce           []byte // client nonce + server nonce

	// fixedServerNonce, when set (tests only), replaces the random server
	// nonce verbatim.
	fixedServerNonce []byte
}

// NewServer returns a Server checking the client against v. lookupUser is the
// user named in the startup packet; SCRAM's own n= attribute is ignored, as
// PostgreSQL ignores it (libpq and pgx send it empty).
//
// If v is not valid (see Verifier.Validate), the exchange runs as a mock one
// and Final fails with an error matching ErrAuthFailed that names the
// problem, like PostgreSQL does for an unusable stored secret.
func NewServer(v Verifier, lookupUser string) *Server {
	s := &Server{v: v, lookupUser: lookupUser}
	if err := v.Validate(); err != nil {
		s.failReason = fmt.Errorf("stored verifier for user %q unusable: %w", lookupUser, err)
		s.v = mockVerifier(lookupUser, nil, DefaultIterations)
	}
	return s
}

// NewMockServer returns a Server for a user that does not exist or has no
// SCRAM verifier. Like PostgreSQL's mock authentication, it presents a salt
// derived deterministically from lookupUser and secret (a per-deployment
// random value, so that the salt cannot be predicted) with the given
// iteration count (DefaultIterations when 0), so that a client cannot tell
// the user does not exist; Final always fails with ErrAuthFailed.
func NewMockServer(lookupUser string, secret []byte, iterations int) *Server {
	if iterations <= 0 {
		iterations = DefaultIterations
	}
	return &Server{
		v:          mockVerifier(lookupUser, secret, iterations),
		lookupUser: lookupUser,
		failReason: fmt.Errorf("no SCRAM verifier for user %q", lookupUser),
	}
}

func mockVerifier(user string, secret []byte, iterations int) Verifier {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write(secret)
	salt := h.Sum(nil)[:SaltLen]
	keys := make([]byte, 2*KeyLen)
	_, _ = rand.Read(keys)
	return Verifier{Iterations: iterations, Salt: salt, StoredKey: keys[:KeyLen], ServerKey: keys[KeyLen:]}
}

// Mechanisms returns the SASL mechanisms to advertise in AuthenticationSASL.
func (s *Server) Mechanisms() []string { return []string{Mechanism} }

// User returns the lookup user the Server was created for.
func (s *Server) User() string { return s.lookupUser }

// ClientUser returns the raw n= value of the client-first-message (usually
// empty; informational only).
func (s *Server) ClientUser() string { return s.clientUser }

// Authenticated reports whether Final verified the client's proof.
func (s *Server) Authenticated() bool { return s.authenticated }

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// First consumes the SASLInitialResponse (mechanism and client-first-message)
// and returns the server-first-message for AuthenticationSASLContinue.
func (s *Server) First(mechanism string, clientFirst []byte) (serverFirst []byte, err error) {
	if s.state != stateInit {
		s.state = stateFailed
		return nil, protoErr("unexpected client-first-message")
	}
	s.state = stateFailed // until success
	switch mechanism {
	case Mechanism:
	case MechanismPlus:
		return nil, protoErr("client selected %s, but channel binding is not supported", MechanismPlus)
	default:
		return nil, protoErr("client selected unsupported SASL mechanism %q", mechanism)
	}
	if err := checkText(clientFirst); err != nil {
		return nil, protoErr("client-first-message: %v", err)
	}

	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	if len(clientFirst) == 0 {
		return nil, protoErr("empty client-first-message")
	}
	switch clientFirst[0] {
	case 'n', 'y':
		// 'y': the client supports channel binding but thinks we do not;
		// true, since we never advertise SCRAM-SHA-256-PLUS.
	case 'p':
		return nil, protoErr("client requires channel binding, which is not supported")
	default:
		return nil, protoErr("client-first-message: invalid gs2 channel-binding flag %q", clientFirst[0])
	}
	if len(clientFirst) < 2 || clientFirst[1] != ',' {
		return nil, protoErr(`client-first-message: expected "," after gs2 channel-binding flag`)
	}
	if bytes.HasPrefix(clientFirst[2:], []byte("a=")) {
		return nil, protoErr("client-first-message: authorization identity (a=) is not supported")
	}
	if len(clientFirst) < 3 || clientFirst[2] != ',' {
		return nil, protoErr(`client-first-message: expected "," ending the gs2 header`)
	}
	gs2Header := clientFirst[:3]
	bare := clientFirst[3:]

	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	attrs, err := splitAttrs(bare)
	if err != nil {
		return nil, protoErr("client-first-message: %v", err)
	}
	if attrs[0].key == 'm' {
		return nil, protoErr("client-first-message: mandatory extension (m=) is not supported")
	}
	if attrs[0].key != 'n' {
		return nil, protoErr("client-first-message: expected username attribute n=, got %q", attrs[0].key)
	}
	if len(attrs) < 2 || attrs[1].key != 'r' {
		return nil, protoErr("client-first-message: expected nonce attribute r= after username")
	}
	clientNonce := attrs[1].val
	if len(clientNonce) == 0 {
		return nil, protoErr("client-first-message: empty nonce")
	}
	if !printable(clientNonce) {
		return nil, protoErr("client-first-message: nonce contains non-printable characters")
	}
	for _, a := range attrs[2:] {
		if a.key == 'n' || a.key == 'r' || a.key == 'm' || len(a.val) == 0 {
			return nil, protoErr("client-first-message: unexpected attribute %q", a.key)
		}
		// Other extensions are ignored, as PostgreSQL does.
	}

	nonce := make([]byte, 0, len(clientNonce)+base64.StdEncoding.EncodedLen(serverNonceLen))
	nonce = append(nonce, clientNonce...)
	if s.fixedServerNonce != nil {
		nonce = append(nonce, s.fixedServerNonce...)
	} else {
		raw := make([]byte, serverNonceLen)
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("scram: generating nonce: %w", err)
		}
		nonce = base64.StdEncoding.AppendEncode(nonce, raw)
	}

	sf := make([]byte, 0, 2+len(nonce)+3+base64.StdEncoding.EncodedLen(len(s.v.Salt))+3+10)
	sf = append(sf, "r="...)
	sf = append(sf, nonce...)
	sf = append(sf, ",s="...)
	sf = base64.StdEncoding.AppendEncode(sf, s.v.Salt)
	sf = append(sf, ",i="...)
	sf = strconv.AppendInt(sf, int64(s.v.Iterations), 10)

	s.clientUser = string(attrs[0].val)
	s.gs2Header = bytes.Clone(gs2Header)
	s.clientFirstBare = bytes.Clone(bare)
	s.serverFirst = sf
	s.nonce = nonce
	s.state = stateFirstDone
	return bytes.Clone(sf), nil
}

// Final consumes the SASLResponse (client-final-message), verifies the proof
// in constant time and returns the server-final-message for
// AuthenticationSASLFinal. A wrong password yields ErrAuthFailed (and no
// server-final-message: PostgreSQL sends an ErrorResponse instead).
func (s *Server) Final(clientFinal []byte) (serverFinal []byte, err error) {
	if s.state != stateFirstDone {
		s.state = stateFailed
		return nil, protoErr("unexpected client-final-message")
	}
	s.state = stateFailed // until success
	if err := checkText(clientFinal); err != nil {
		return nil, protoErr("client-final-message: %v", err)
	}

	// client-final-message = channel-binding "," nonce ["," extensions] "," proof
	attrs, err := splitAttrs(clientFinal)
	if err != nil {
		return nil, protoErr("client-final-message: %v", err)
	}
	if attrs[0].key != 'c' {
		return nil, protoErr("client-final-message: expected channel-binding attribute c= first, got %q", attrs[0].key)
	}
	cbind, err := decodeBase64(string(attrs[0].val))
	if err != nil {
		return nil, protoErr("client-final-message: channel-binding attribute: %v", err)
	}
	if !bytes.Equal(cbind, s.gs2Header) {
		return nil, protoErr("client-final-message: channel-binding data does not match the gs2 header of the client-first-message")
	}
	if len(attrs) < 2 || attrs[1].key != 'r' {
		return nil, protoErr("client-final-message: expected nonce attribute r= after c=")
	}
	if !bytes.Equal(attrs[1].val, s.nonce) {
		return nil, protoErr("client-final-message: nonce does not match the server-first-message nonce")
	}
	last := attrs[len(attrs)-1]
	if len(attrs) < 3 || last.key != 'p' {
		return nil, protoErr("client-final-message: expected proof attribute p= last")
	}
	for _, a := range attrs[2 : len(attrs)-1] {
		if a.key == 'c' || a.key == 'r' || a.key == 'p' || len(a.val) == 0 {
			return nil, protoErr("client-final-message: unexpected attribute %q", a.key)
		}
	}
	proof, err := decodeBase64(string(last.val))
	if err != nil {
		return nil, protoErr("client-final-message: proof: %v", err)
	}
	if len(proof) != KeyLen {
		return nil, protoErr("client-final-message: proof is %d bytes, want %d", len(proof), KeyLen)
	}
	withoutProof := clientFinal[:len(clientFinal)-len(last.val)-len(",p=")]

	authMessage := make([]byte, 0, len(s.clientFirstBare)+1+len(s.serverFirst)+1+len(withoutProof))
	authMessage = append(authMessage, s.clientFirstBare...)
	authMessage = append(authMessage, ',')
	authMessage = append(authMessage, s.serverFirst...)
	authMessage = append(authMessage, ',')
	authMessage = append(authMessage, withoutProof...)

	// ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the client
	// knows the password iff H(ClientKey) == StoredKey.
	clientKey := hmacSHA256(s.v.StoredKey, authMessage)
	subtle.XORBytes(clientKey, clientKey, proof)
	computed := sha256.Sum256(clientKey)
	ok := subtle.ConstantTimeCompare(computed[:], s.v.StoredKey) == 1
	s.state = stateDone
	if s.failReason != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuthFailed, s.failReason)
	}
	if !ok {
		return nil, ErrAuthFailed
	}
	s.authenticated = true

	out := make([]byte, 0, 2+base64.StdEncoding.EncodedLen(KeyLen))
	out = append(out, "v="...)
	out = base64.StdEncoding.AppendEncode(out, hmacSHA256(s.v.ServerKey, authMessage))
	return out, nil
}

type attr struct {
	key byte
	val []byte
}

// splitAttrs splits a comma-separated list of SCRAM attributes
// (ALPHA "=" value). Values may be empty here; callers check.
func splitAttrs(msg []byte) ([]attr, error) {
	if len(msg) == 0 {
		return nil, errors.New("empty message")
	}
	var attrs []attr
	for part := range bytes.SplitSeq(msg, []byte(",")) {
		if len(part) < 2 || part[1] != '=' {
			return nil, fmt.Errorf("malformed attribute %q", truncate(part))
		}
		k := part[0]
		if !(k >= 'a' && k <= 'z' || k >= 'A' && k <= 'Z') {
			return nil, fmt.Errorf("invalid attribute name %q", k)
		}
		attrs = append(attrs, attr{key: k, val: part[2:]})
	}
	return attrs, nil
}

// checkText enforces that a SCRAM message is UTF-8 without NUL (RFC 5802
// value-char excludes NUL).
func checkText(b []byte) error {
	if bytes.IndexByte(b, 0) >= 0 {
		return errors.New("contains NUL byte")
	}
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	return nil
}

// printable is RFC 5802's printable: %x21-2B / %x2D-7E.
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	const n = 32
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
