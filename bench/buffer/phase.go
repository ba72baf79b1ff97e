package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// phase is the result of one load phase, merged over its load processes.
type phase struct {
	Writes    uint64  `json:"writes"` // acknowledged
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"writes_per_second"`
	P50MS     float64 `json:"p50_ms"`
	P90MS     float64 `json:"p90_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	// Non202 counts HTTP answers other than 202 (ingest only); Errors,
	// writes that got no answer.
	Non202     uint64 `json:"non_202"`
	Errors     uint64 `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// CPU seconds used during the phase by the server process (this one:
	// NATS, and for ingest the HTTP server and the committer), by the load
	// processes, and by PostgreSQL.
	ServerCPU   float64 `json:"server_cpu_seconds"`
	ClientCPU   float64 `json:"client_cpu_seconds"`
	PostgresCPU float64 `json:"postgres_cpu_seconds"`
	// LateStartMS is how late the last load process began, after the
	// common start time (it should be 0).
	LateStartMS float64 `json:"late_start_ms,omitempty"`

	sum keySum
}

// startDelay is how far ahead the load processes are told to start, so
// that they start together, connected.
const startDelay = 1500 * time.Millisecond

// runPhase runs o.procs load processes of role against target, with
// o.clients writers between them, and merges what they report. pgPID is
// the postmaster's (for its CPU time).
func runPhase(ctx context.Context, o options, role, target string, pgPID int) (phase, error) {
	start := time.Now().Add(startDelay)
	type out struct {
		res loadResult
		err error
	}
	results := make(chan out, o.procs)
	serverCPU0, pgCPU0 := cpuSeconds(syscall.RUSAGE_SELF), postgresCPUSeconds(pgPID)
	for i := range o.procs {
		n := o.clients / o.procs
		if i < o.clients%o.procs {
			n++
		}
		args := []string{"-role", role, "-target", target, "-clients", strconv.Itoa(n), "-procs", "1",
			"-duration", o.duration.String(), "-start", strconv.FormatInt(start.UnixNano(), 10)}
		go func() {
			b, err := runChild(ctx, args)
			var r loadResult
			if err == nil {
				if err = json.Unmarshal(b, &r); err != nil {
					err = fmt.Errorf("load process output: %w", err)
				}
			}
			results <- out{r, err}
		}()
	}
	var (
		p            phase
		first, last  time.Time
		errs         []error
		lat          = newHist()
		clientCPUSum float64
	)
	for range o.procs {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		res := r.res
		p.Writes += res.OK
		p.Errors += res.Errors
		for _, n := range res.Non202 {
			p.Non202 += n
		}
		if p.FirstError == "" {
			p.FirstError = res.FirstError
			if p.FirstError == "" && len(res.Non202) > 0 {
				p.FirstError = fmt.Sprintf("HTTP status codes %v", res.Non202)
			}
		}
		clientCPUSum += res.CPUSeconds
		h, err := histFromJSON(res.Latency)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lat.merge(h)
		s, err := parseKeySum(res.KeySum)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.sum.merge(s)
		st, en := time.Unix(0, res.StartUnixNano), time.Unix(0, res.EndUnixNano)
		if first.IsZero() || st.Before(first) {
			first = st
		}
		if en.After(last) {
			last = en
		}
		p.LateStartMS = max(p.LateStartMS, float64(st.Sub(start).Microseconds())/1000)
	}
	p.ServerCPU = round(cpuSeconds(syscall.RUSAGE_SELF)-serverCPU0, 2)
	p.PostgresCPU = round(postgresCPUSeconds(pgPID)-pgCPU0, 2)
	p.ClientCPU = round(clientCPUSum, 2)
	if ctx.Err() != nil {
		return p, ctx.Err()
	}
	if err := errors.Join(errs...); err != nil {
		return p, err
	}
	p.Seconds = round(last.Sub(first).Seconds(), 3)
	if p.Seconds > 0 {
		p.PerSecond = round(float64(p.Writes)/last.Sub(first).Seconds(), 1)
	}
	ms := func(us uint64) float64 { return float64(us) / 1000 }
	p.P50MS, p.P90MS, p.P99MS, p.MaxMS = ms(lat.quantile(0.50)), ms(lat.quantile(0.90)), ms(lat.quantile(0.99)), ms(lat.maxUS)
	return p, nil
}

// round rounds x to digits decimals, for a readable report.
func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// runChild runs this program again with args (a load process) and returns
// its standard output. The process is killed when ctx ends, and when this
// one dies: the goroutine that forks it keeps its OS thread until it has
// exited, because the parent-death signal fires when the forking thread
// exits.
func runChild(ctx context.Context, args []string) ([]byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var stdout bytes.Buffer
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start load process: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("load process %v: %w", args[:2], err)
	}
	return stdout.Bytes(), nil
}
