package buffer

import (
	"errors"
	"testing"
	"time"
)

func TestIngestValidate(t *testing.T) {
	h, ok := IngestHandlers().Lookup(KindIngest)
	if !ok {
		t.Fatal("ingest is not registered")
	}
	for _, tt := range []struct {
		payload string
		ok      bool
	}{
		{`{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}`, true},
		{`{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11","requested_at":"2026-11-23T12:00:00Z"}`, true},
		{`{"guid":"nope"}`, false},
		{`{}`, false},
		{`{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11","requested_at":"yesterday"}`, false},
		{`not json`, false},
	} {
		err := h.Validate([]byte(tt.payload))
		if (err == nil) != tt.ok {
			t.Errorf("Validate(%s) = %v, want ok=%v", tt.payload, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrRejected) {
			t.Errorf("Validate(%s) = %v, not ErrRejected", tt.payload, err)
		}
	}
}

func TestIngestApply(t *testing.T) {
	_, conn, ctx := startDatabase(t, IngestDDL)
	accepted := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	requested := accepted.Add(-time.Second)
	out, _, err := applyBatch(ctx, conn, IngestHandlers(), []Write{
		{Kind: KindIngest, Key: "a", Payload: []byte(`{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}`), AcceptedAt: accepted},
		{Kind: KindIngest, Key: "b", Payload: []byte(`{"guid":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","requested_at":"` + requested.Format(time.RFC3339) + `"}`), AcceptedAt: accepted},
		// Another key for the same guid: refused by the primary key, alone.
		{Kind: KindIngest, Key: "c", Payload: []byte(`{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}`), AcceptedAt: accepted},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !out[0].Applied || !out[1].Applied || out[2].Err == nil || Transient(out[2].Err) {
		t.Fatalf("outcomes %+v", out)
	}
	var at time.Time
	if err := conn.QueryRow(ctx, "SELECT requested_at FROM ingest WHERE guid = '1b4e28ba-2fa1-11d2-883f-0016d3cca427'").Scan(&at); err != nil || !at.Equal(requested) {
		t.Fatalf("requested_at = %v (%v), want %v", at, err, requested)
	}
	if err := conn.QueryRow(ctx, "SELECT requested_at FROM ingest WHERE guid = '6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11'").Scan(&at); err != nil || !at.Equal(accepted) {
		t.Fatalf("requested_at = %v (%v), want the acceptance time %v", at, err, accepted)
	}
}
