package buffer

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestIngestHTTP(t *testing.T) {
	f := startNATS(t)
	cfg := DefaultLogConfig()
	l, err := OpenLog(context.Background(), f.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	icfg := DefaultIngestConfig()
	icfg.MaxKeyBytes, icfg.MaxPayloadBytes = 40, 256 // a guid (36) fits
	icfg.Handlers = testHandlers
	mux := http.NewServeMux()
	NewIngest(l, icfg).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	post := func(ct, body string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/v1/writes", ct, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	const good = `{"kind":"ingest","key":"k1","payload":{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}}`
	resp, body := post("application/json", good)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("good write: %d %s", resp.StatusCode, body)
	}
	var acc Accepted
	if err := json.Unmarshal([]byte(body), &acc); err != nil || acc.Key != "k1" || acc.Status != "accepted" {
		t.Fatalf("202 body %s (%v)", body, err)
	}

	for _, tt := range []struct {
		name, ct, body string
		status         int
		field          string
	}{
		{"not JSON", "application/json", `{"kind":`, 400, ""},
		{"unknown field", "application/json", `{"kind":"ingest","key":"k","payload":{},"extra":1}`, 400, "extra"},
		{"two objects", "application/json", good + good, 400, ""},
		{"no kind", "application/json", `{"key":"k","payload":{}}`, 400, "kind"},
		{"unknown kind", "application/json", `{"kind":"nope","key":"k","payload":{}}`, 400, "kind"},
		{"no key", "application/json", `{"kind":"ingest","payload":{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}}`, 400, "key"},
		{"long key", "application/json", `{"kind":"ingest","key":"` + strings.Repeat("k", 41) + `","payload":{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}}`, 400, "key"},
		{"no payload", "application/json", `{"kind":"ingest","key":"k"}`, 400, "payload"},
		{"null payload", "application/json", `{"kind":"ingest","key":"k","payload":null}`, 400, "payload"},
		{"payload the handler rejects", "application/json", `{"kind":"ingest","key":"k","payload":{"guid":"x"}}`, 400, "payload"},
		{"big payload", "application/json", `{"kind":"ingest","key":"k","payload":{"guid":"` + strings.Repeat("a", 300) + `"}}`, 413, "payload"},
		{"huge body", "application/json", `{"kind":"ingest","key":"k","payload":"` + strings.Repeat("a", 10000) + `"}`, 413, ""},
		{"wrong content type", "text/plain", good, 415, ""},
	} {
		resp, body := post(tt.ct, tt.body)
		if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s, want %d problem+json", tt.name, resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.status)
			continue
		}
		var p Problem
		if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != tt.status || p.Title == "" || p.Field != tt.field {
			t.Errorf("%s: problem %s (%v), want field %q", tt.name, body, err, tt.field)
		}
	}

	// The shortcut of the reference demo.
	r2, err := http.Get(srv.URL + "/ingest?guid=1b4e28ba-2fa1-11d2-883f-0016d3cca427")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusAccepted {
		t.Fatalf("GET /ingest: %d", r2.StatusCode)
	}
	if r3, err := http.Get(srv.URL + "/ingest?guid=nope"); err != nil || r3.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET /ingest with a bad guid: %v %v", r3.StatusCode, err)
	}

	// Only the two good writes were enqueued.
	keys, _ := storedKeys(t, f.nc, cfg.Stream)
	if len(keys) != 2 || keys["k1"] != 1 || keys["1b4e28ba-2fa1-11d2-883f-0016d3cca427"] != 1 {
		t.Fatalf("stored keys %v, want k1 and the guid", keys)
	}
}

// memLog is an in-memory appender (the fuzz target checks ingest's
// decisions, not storage).
type memLog struct{ ws []Write }

func (m *memLog) Append(_ context.Context, w Write) error {
	m.ws = append(m.ws, w)
	return nil
}

// FuzzIngestRequest: any body gets either 202 with exactly the write it
// describes stored, or a 4xx problem+json with nothing stored.
func FuzzIngestRequest(f *testing.F) {
	f.Add(`{"kind":"ingest","key":"k1","payload":{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}}`)
	f.Add(`{"kind":"ingest","key":"k1","payload":{"guid":"nope"}}`)
	f.Add(`{"kind":"test-ingest","key":"","payload":{}}`)
	f.Add(`{"kind":"x","key":"k","payload":null}`)
	f.Add(`{"kind":"ingest","key":"k","payload":{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11"}} {}`)
	f.Add(`{"kind":"ingest","key":"k","payload":{},"extra":1}`)
	f.Add(`[1,2]`)
	f.Add("{\"kind\":\"test-ingest\",\"key\":\"\xff\",\"payload\":\"\"}")
	icfg := DefaultIngestConfig()
	icfg.MaxKeyBytes, icfg.MaxPayloadBytes = 40, 256
	icfg.Handlers = testHandlers
	f.Fuzz(func(t *testing.T, body string) {
		m := &memLog{}
		in := newIngest(m, icfg)
		in.index = newPendingIndex()
		mux := http.NewServeMux()
		in.Register(mux)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/writes", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		mux.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusAccepted:
			if len(m.ws) != 1 {
				t.Fatalf("202 with %d writes stored", len(m.ws))
			}
			w := m.ws[0]
			var req struct {
				Kind, Key string
				Payload   json.RawMessage
			}
			if err := json.Unmarshal([]byte(body), &req); err != nil {
				t.Fatalf("202 for a body that is not JSON: %v", err)
			}
			if w.Kind != req.Kind || w.Key != req.Key || w.Key == "" || len(w.Key) > icfg.MaxKeyBytes || len(w.Payload) > icfg.MaxPayloadBytes || !json.Valid(w.Payload) {
				t.Fatalf("stored %+v for %q", w, body)
			}
			if _, ok := testHandlers.Lookup(w.Kind); !ok {
				t.Fatalf("stored a write of unknown kind %q", w.Kind)
			}
			if _, ok := in.index.get(w.Key); !ok {
				t.Fatalf("accepted write %q not indexed as pending", w.Key)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if len(m.ws) != 0 {
				t.Fatalf("%d with %d writes stored", rec.Code, len(m.ws))
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d: body %q", rec.Code, rec.Body.String())
			}
			if n, _ := in.index.depth(); n != 0 {
				t.Fatalf("a refused write left %d pending entries", n)
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
