package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Load roles: the value of -role in a load process.
const (
	roleHTTP      = "http"      // POST /v1/writes to -target (a URL)
	roleJetStream = "jetstream" // publish to baselineSubject on -target (a NATS URL)
)

const (
	baselineStream  = "BENCH_BASELINE"
	baselineSubject = "bench.baseline"
)

// loadResult is what a load process prints on stdout, as JSON.
type loadResult struct {
	// OK are the acknowledged writes: HTTP 202, or a JetStream publish
	// acknowledgement.
	OK uint64 `json:"ok"`
	// Non202 are HTTP answers other than 202, by status code; Errors are
	// requests or publishes that got no answer (transport error, timeout).
	Non202     map[string]uint64 `json:"non_202,omitempty"`
	Errors     uint64            `json:"errors"`
	FirstError string            `json:"first_error,omitempty"`
	// The process's load window and the CPU it used in it.
	StartUnixNano int64   `json:"start_unix_nano"`
	EndUnixNano   int64   `json:"end_unix_nano"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	// Latency of the acknowledged writes.
	Latency histJSON `json:"latency"`
	// KeySum adds up the acknowledged guids (see keySum), in decimal.
	KeySum string `json:"key_sum"`
}

// writer makes one write and tells whether it was acknowledged: status is
// the HTTP status (0 for JetStream), err a transport error.
type writer func() (g uuid.UUID, status int, err error)

// worker is what one writer goroutine counts.
type worker struct {
	ok, errors uint64
	non202     map[int]uint64
	firstErr   string
	lat        *hist
	sum        keySum
}

// runLoad is a load process: o.clients writers against o.target from
// o.start (unix nanoseconds) for o.duration. It prints a loadResult.
func runLoad(o options) int {
	uuid.EnableRandPool()
	writers := make([]writer, o.clients)
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for i := range writers {
		w, closeFn, err := newWriter(o.role, o.target)
		if err != nil {
			fmt.Fprintf(os.Stderr, "load process (%s): %v\n", o.role, err)
			return 1
		}
		writers[i] = w
		closers = append(closers, closeFn)
	}
	start := time.Unix(0, o.start)
	if o.start == 0 {
		start = time.Now()
	}
	time.Sleep(time.Until(start))
	start = time.Now() // the real start, if this process was late
	deadline := start.Add(o.duration)
	cpu0 := cpuSeconds(syscall.RUSAGE_SELF)

	var (
		wg      sync.WaitGroup
		workers = make([]*worker, len(writers))
	)
	for i, write := range writers {
		w := &worker{non202: map[int]uint64{}, lat: newHist()}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t := time.Now()
				g, status, err := write()
				d := time.Since(t)
				switch {
				case err != nil:
					w.errors++
					if w.firstErr == "" {
						w.firstErr = err.Error()
					}
				case status != 0 && status != http.StatusAccepted:
					w.non202[status]++
				default:
					w.ok++
					w.lat.add(uint64(d.Microseconds()))
					w.sum.add(guidBits(g))
				}
			}
		}()
	}
	wg.Wait()
	end := time.Now()

	res := loadResult{StartUnixNano: start.UnixNano(), EndUnixNano: end.UnixNano(), CPUSeconds: cpuSeconds(syscall.RUSAGE_SELF) - cpu0}
	lat := newHist()
	var sum keySum
	for _, w := range workers {
		res.OK += w.ok
		res.Errors += w.errors
		if res.FirstError == "" {
			res.FirstError = w.firstErr
		}
		for code, n := range w.non202 {
			if res.Non202 == nil {
				res.Non202 = map[string]uint64{}
			}
			res.Non202[fmt.Sprint(code)] += n
		}
		lat.merge(w.lat)
		sum.merge(w.sum)
	}
	res.Latency, res.KeySum = lat.toJSON(), sum.String()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "load process: %v\n", err)
		return 1
	}
	return 0
}

// ingestBody is the write both phases send: an ingest write keyed by its
// guid, as clients of holdfast send it.
func ingestBody(g uuid.UUID) string {
	s := g.String()
	return `{"kind":"ingest","key":"` + s + `","payload":{"guid":"` + s + `"}}`
}

// newWriter connects one writer: its own keep-alive HTTP/1.1 connection,
// or its own NATS connection.
func newWriter(role, target string) (writer, func(), error) {
	switch role {
	case roleJetStream:
		nc, err := nats.Connect(target, nats.Name("bench-baseline"))
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return func() (uuid.UUID, int, error) {
			g := uuid.New()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := js.Publish(ctx, baselineSubject, []byte(ingestBody(g)))
			return g, 0, err
		}, nc.Close, nil
	case roleHTTP:
		tr := &http.Transport{
			MaxIdleConns: 1, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
			IdleConnTimeout: time.Minute, DisableCompression: true,
		}
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		// Open the connection before the load starts: a request for a
		// path the server does not have (404, nothing written).
		resp, err := client.Get(strings.TrimSuffix(target, "/v1/writes") + "/bench-warm-up")
		if err != nil {
			return nil, nil, fmt.Errorf("connect to %s: %w", target, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return func() (uuid.UUID, int, error) {
			g := uuid.New()
			req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(ingestBody(g)))
			if err != nil {
				return g, 0, err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return g, 0, err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return g, resp.StatusCode, nil
		}, tr.CloseIdleConnections, nil
	}
	return nil, nil, fmt.Errorf("unknown role %q", role)
}

// cpuSeconds is the user and system CPU time of who (RUSAGE_SELF or
// RUSAGE_CHILDREN).
func cpuSeconds(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
