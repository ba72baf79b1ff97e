package buffer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestTransient(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("apply: %w", &pgconn.PgError{Code: code}) }
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"serialization failure", pg("40001"), true},
		{"deadlock", pg("40P01"), true},
		{"read-only after failover", pg("25006"), true},
		{"admin shutdown", pg("57P01"), true},
		{"cannot connect now", pg("57P03"), true},
		{"connection failure class", pg("08006"), true},
		{"commit outcome unknown", pg("08007"), true},
		{"too many connections", pg("53300"), true},
		{"disk full", pg("53100"), true},
		{"I/O error", pg("58030"), true},
		{"lock timeout", pg("55P03"), true},
		{"unique violation", pg("23505"), false},
		{"not null violation", pg("23502"), false},
		{"bad input syntax", pg("22P02"), false},
		{"undefined table", pg("42P01"), false},
		{"check violation", pg("23514"), false},
		{"handler rejected", fmt.Errorf("bad guid: %w", ErrRejected), false},
		{"deadline", context.DeadlineExceeded, true},
		{"net error", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{"closed connection", fmt.Errorf("write: %w", net.ErrClosed), true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"nil", nil, false},
		{"unknown", errors.New("something else"), false},
	} {
		if got := Transient(tt.err); got != tt.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	base, ceiling := 50*time.Millisecond, 5*time.Second
	for _, tt := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 25 * time.Millisecond, 50 * time.Millisecond},
		{1, 25 * time.Millisecond, 50 * time.Millisecond},
		{2, 50 * time.Millisecond, 100 * time.Millisecond},
		{4, 200 * time.Millisecond, 400 * time.Millisecond},
		{10, 2500 * time.Millisecond, 5 * time.Second},
		{1000, 2500 * time.Millisecond, 5 * time.Second},
	} {
		for range 200 {
			if d := Backoff(tt.attempt, base, ceiling); d < tt.min || d > tt.max {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", tt.attempt, d, tt.min, tt.max)
			}
		}
	}
}
