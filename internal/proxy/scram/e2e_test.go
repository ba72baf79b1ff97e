package scram

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

type serverResult struct {
	user          string
	authenticated bool
	err           error
}

// fakePostgres speaks just enough of the PostgreSQL startup protocol to run
// a SCRAM exchange with Server, then reports the outcome on results.
func fakePostgres(t *testing.T, verifiers map[string]Verifier) (addr string, results <-chan serverResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan serverResult, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				ch <- serveConn(conn, verifiers)
			}()
		}
	}()
	return ln.Addr().String(), ch
}

func serveConn(conn net.Conn, verifiers map[string]Verifier) serverResult {
	be := pgproto3.NewBackend(conn, conn)
	var startup *pgproto3.StartupMessage
	for startup == nil {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return serverResult{err: fmt.Errorf("startup: %w", err)}
		}
		switch m := msg.(type) {
		case *pgproto3.StartupMessage:
			startup = m
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return serverResult{err: err}
			}
		default:
			return serverResult{err: fmt.Errorf("unexpected startup message %T", msg)}
		}
	}
	user := startup.Parameters["user"]
	res := serverResult{user: user}

	fail := func(code, msg string, err error) serverResult {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
		_ = be.Flush()
		res.err = err
		return res
	}

	var s *Server
	if v, ok := verifiers[user]; ok {
		s = NewServer(v, user)
	} else {
		s = NewMockServer(user, []byte("test-secret"), 0)
	}

	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: s.Mechanisms()})
	if err := be.Flush(); err != nil {
		res.err = err
		return res
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		res.err = err
		return res
	}
	msg, err := be.Receive()
	if err != nil {
		res.err = err
		return res
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return fail("08P01", "expected SASLInitialResponse", fmt.Errorf("got %T", msg))
	}
	sf, err := s.First(initial.AuthMechanism, initial.Data)
	if err != nil {
		return fail("08P01", "invalid SCRAM message", err)
	}
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: sf})
	if err := be.Flush(); err != nil {
		res.err = err
		return res
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		res.err = err
		return res
	}
	msg, err = be.Receive()
	if err != nil {
		res.err = err
		return res
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return fail("08P01", "expected SASLResponse", fmt.Errorf("got %T", msg))
	}
	fin, err := s.Final(resp.Data)
	if errors.Is(err, ErrAuthFailed) {
		return fail("28P01", fmt.Sprintf("password authentication failed for user %q", user), err)
	}
	if err != nil {
		return fail("08P01", "invalid SCRAM message", err)
	}
	res.authenticated = s.Authenticated()
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: fin})
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		res.err = err
		return res
	}
	// Wait for Terminate (or EOF).
	for {
		msg, err := be.Receive()
		if err != nil {
			return res
		}
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return res
		}
	}
}

func TestEndToEndWithPgconn(t *testing.T) {
	v := mustVerifier(t, "secret", 0) // 4096 iterations, as PostgreSQL

	// golden was made by PostgreSQL for "cafe\u0301".
	var golden Verifier
	for _, g := range goldenPG {
		if g.password == "cafe\u0301" {
			var err error
			if golden, err = ParseVerifier(g.verifier); err != nil {
				t.Fatal(err)
			}
		}
	}
	addr, results := fakePostgres(t, map[string]Verifier{"app": v, "intl": golden})
	host, port, _ := net.SplitHostPort(addr)

	connect := func(user, password string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s sslmode=disable", host, port, user))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = password
		conn, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		if pid := conn.PID(); pid != 4242 {
			t.Errorf("PID = %d", pid)
		}
		if sv := conn.ParameterStatus("server_version"); sv != "15.0" {
			t.Errorf("server_version = %q", sv)
		}
		return conn.Close(ctx)
	}
	next := func() serverResult {
		select {
		case r := <-results:
			return r
		case <-time.After(15 * time.Second):
			t.Fatal("server did not report")
			return serverResult{}
		}
	}

	t.Run("success", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		conn, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s user=app password=secret sslmode=disable", host, port))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if conn.PID() != 4242 || conn.ParameterStatus("server_version") != "15.0" {
			t.Errorf("PID %d, server_version %q", conn.PID(), conn.ParameterStatus("server_version"))
		}
		if err := conn.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if r := next(); r.err != nil || !r.authenticated || r.user != "app" {
			t.Fatalf("server result %+v", r)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		err := connect("app", "not-the-secret")
		r := next()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("want 28P01, got %v", err)
		}
		if !errors.Is(r.err, ErrAuthFailed) || r.authenticated {
			t.Fatalf("server result %+v", r)
		}
	})

	t.Run("unknown user mock", func(t *testing.T) {
		err := connect("ghost", "secret")
		r := next()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("want 28P01, got %v", err)
		}
		if !errors.Is(r.err, ErrAuthFailed) {
			t.Fatalf("server result %+v", r)
		}
	})

	// A verifier made by PostgreSQL for a non-ASCII password (stored as the
	// SASLprep form "caf\u00e9"). pgx prepares passwords with PRECIS
	// OpaqueString (NFC), which agrees with PostgreSQL's SASLprep (NFKC) here,
	// so both spellings must work. (It does not agree for e.g. "\u2168" or a
	// soft hyphen: pgx then fails against real PostgreSQL too.)
	for _, pw := range []string{"cafe\u0301", "caf\u00e9"} {
		t.Run("saslprep "+pw, func(t *testing.T) {
			err := connect("intl", pw)
			r := next()
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			if r.err != nil || !r.authenticated {
				t.Fatalf("server result %+v", r)
			}
		})
	}
	t.Run("saslprep wrong", func(t *testing.T) {
		err := connect("intl", "cafe")
		r := next()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" || !errors.Is(r.err, ErrAuthFailed) {
			t.Fatalf("want 28P01, got %v / %+v", err, r)
		}
	})
}
