package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/config"
)

const pgbenchBin = "/usr/lib/postgresql/15/bin/pgbench"

// pgbenchRun is one invocation of pgbench.
type pgbenchRun struct {
	args    []string
	port    int
	cred    config.Credentials
	logPath string        // stdout and stderr, with the command line first
	timeout time.Duration // hard limit: pgbench is killed after it (0: none)
}

// pgbenchResult is what pgbench reported.
type pgbenchResult struct {
	TPS          float64 `json:"tps"`
	LatencyMS    float64 `json:"latency_avg_ms"`
	Processed    int64   `json:"transactions"`
	Failed       int64   `json:"failed_transactions"`
	Retried      int64   `json:"retried_transactions"`
	Aborted      int     `json:"aborted_clients"`
	ExitCode     int     `json:"exit_code"`
	Hung         bool    `json:"hung,omitempty"` // killed after the hard timeout
	FirstProblem string  `json:"first_problem,omitempty"`
	Err          string  `json:"error,omitempty"`
}

// ok: pgbench ran to the end with every client.
func (r pgbenchResult) ok() bool {
	return r.Err == "" && r.ExitCode == 0 && r.Aborted == 0 && !r.Hung && r.TPS > 0
}

// pgbenchEnv is the environment of pgbench: the harness's, without any
// PG* variable that could redirect it, plus the target's.
func pgbenchEnv(port int, c config.Credentials) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PG") {
			env = append(env, e)
		}
	}
	return append(env,
		"PGHOST=127.0.0.1",
		"PGPORT="+strconv.Itoa(port),
		"PGUSER="+c.User,
		"PGPASSWORD="+c.Password,
		"PGDATABASE="+c.Database,
		"PGSSLMODE=disable",
		"PGCONNECT_TIMEOUT=10",
		"PGAPPNAME=holdfast-proxy-bench",
	)
}

// start starts pgbench; wait collects its result.
func (r pgbenchRun) start(ctx context.Context) (*exec.Cmd, *bytes.Buffer, error) {
	cmd := exec.CommandContext(ctx, pgbenchBin, r.args...)
	cmd.Env = pgbenchEnv(r.port, r.cred)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	fmt.Fprintf(&out, "$ PGPORT=%d pgbench %s\n", r.port, strings.Join(r.args, " "))
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start pgbench: %w", err)
	}
	return cmd, &out, nil
}

func (r pgbenchRun) wait(ctx context.Context, cmd *exec.Cmd, out *bytes.Buffer) pgbenchResult {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timer <-chan time.Time
	if r.timeout > 0 {
		timer = time.After(r.timeout)
	}
	var err error
	hung := false
	select {
	case err = <-done:
	case <-timer:
		hung = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
	}
	if hung {
		fmt.Fprintf(out, "\n[bench: pgbench still running %s after it started: killed]\n", r.timeout)
	}
	if r.logPath != "" {
		_ = os.WriteFile(r.logPath, out.Bytes(), 0o644)
	}
	res := parsePgbench(out.String())
	res.Hung = hung
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		res.Err = ctx.Err().Error()
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case err != nil:
		res.Err = err.Error()
	}
	if hung {
		res.Err = fmt.Sprintf("hung: killed after %s", r.timeout)
	}
	return res
}

func (r pgbenchRun) run(ctx context.Context) pgbenchResult {
	cmd, out, err := r.start(ctx)
	if err != nil {
		return pgbenchResult{Err: err.Error()}
	}
	return r.wait(ctx, cmd, out)
}

var (
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	reLatency   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	reRetried   = regexp.MustCompile(`(?m)^number of transactions retried: (\d+)`)
	// "client 3 aborted in command 8 ..." or "client 15 script 0 aborted in command 10 query 0: ...".
	reAborted = regexp.MustCompile(`client \d+ (?:script \d+ )?aborted`)
	reProblem = regexp.MustCompile(`(?m)^pgbench: (?:error|fatal): .*$|client \d+ (?:script \d+ )?aborted.*$`)
)

// parsePgbench reads pgbench's (PostgreSQL 15) report. Missing lines leave
// zeros: a run that died early has no tps line.
func parsePgbench(out string) pgbenchResult {
	var r pgbenchResult
	if m := reTPS.FindStringSubmatch(out); m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reLatency.FindStringSubmatch(out); m != nil {
		r.LatencyMS, _ = strconv.ParseFloat(m[1], 64)
	}
	for re, p := range map[*regexp.Regexp]*int64{reProcessed: &r.Processed, reFailed: &r.Failed, reRetried: &r.Retried} {
		if m := re.FindStringSubmatch(out); m != nil {
			*p, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}
	r.Aborted = len(reAborted.FindAllString(out, -1))
	if m := reProblem.FindString(out); m != "" {
		r.FirstProblem = strings.TrimSpace(m)
	}
	return r
}

// pgbenchVersion is `pgbench --version`.
func pgbenchVersion() string {
	out, err := exec.Command(pgbenchBin, "--version").Output()
	if err != nil {
		return "pgbench: " + err.Error()
	}
	return strings.TrimSpace(string(out))
}
