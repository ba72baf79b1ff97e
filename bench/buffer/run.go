package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/postgres"
)

// report is the whole run.
type report struct {
	Clients  int    `json:"clients"`
	Procs    int    `json:"load_processes"`
	Duration string `json:"duration"`
	CPUs     int    `json:"cpus"`
	// Where the load ran: always separate OS processes.
	LoadIn   string  `json:"load_in"`
	Baseline phase   `json:"baseline"`
	Ingest   phase   `json:"ingest"`
	Ratio    float64 `json:"ingest_over_baseline"`
	Drain    drain   `json:"drain"`
	Verify   verify  `json:"verify"`
	Targets  []check `json:"targets"`
}

// drain is what the committer did during the ingest phase and after it.
type drain struct {
	CommittedDuringIngest uint64  `json:"committed_during_ingest"`
	CommitRateIngest      float64 `json:"committed_per_second_during_ingest"`
	// At the end of the ingest phase: writes pending (stored, not yet
	// committed) and the age of the oldest.
	PendingAtEnd     int     `json:"pending_at_end_of_ingest"`
	OldestPendingSec float64 `json:"oldest_pending_seconds_at_end_of_ingest"`
	// PendingBatches are the JetStream messages (group commits) holding
	// them: the committer applies one per transaction.
	PendingBatches uint64 `json:"pending_batches_at_end_of_ingest"`
	// Seconds from the end of the ingest phase until every stored write
	// was committed, and the commit rate meanwhile.
	Seconds          float64 `json:"drain_seconds"`
	CommittedInDrain uint64  `json:"committed_during_drain"`
	PerSecond        float64 `json:"committed_per_second_during_drain"`
	ServerCPU        float64 `json:"server_cpu_seconds"`
	PostgresCPU      float64 `json:"postgres_cpu_seconds"`
	// Over the whole run.
	Duplicates       uint64 `json:"duplicates"`
	TransientRetries uint64 `json:"transient_retries"`
	DeadLettered     uint64 `json:"dead_lettered"`
}

// verify compares table ingest with what the clients were told.
type verify struct {
	Acknowledged uint64 `json:"acknowledged"` // 202s the clients got
	Stored       uint64 `json:"stored"`       // writes the buffer stored (its "accepted")
	Rows         int64  `json:"rows_in_ingest"`
	AppliedKeys  int64  `json:"applied_keys"` // ingest keys in holdfast_buffer_applied
	KeysMatch    bool   `json:"keys_match"`   // the rows' guids add up to the acknowledged ones'
	OK           bool   `json:"ok"`
}

type check struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	Value  string `json:"value"`
	Met    bool   `json:"met"`
}

const tmpfsMagic = 0x01021994

func run(ctx context.Context, o options) (code int) {
	dir, err := os.MkdirTemp(o.dir, "holdfast-bench-buffer-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	// The postgres OS user must reach its directories inside.
	_ = os.Chmod(dir, 0o755)
	if o.keep {
		defer logf("kept %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(dir, &fs) == nil && fs.Type == tmpfsMagic {
		logf("warning: %s is on tmpfs, where fsync costs nothing; use -dir on a real disk", o.dir)
	}
	logFile, err := os.Create(filepath.Join(dir, "buffer.log"))
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, nil))

	logf("starting PostgreSQL 15 in %s", dir)
	dsn, pg, err := startPostgres(ctx, dir, log)
	if pg != nil {
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = pg.Stop(sctx, postgres.StopFast)
		}()
	}
	if err != nil {
		logf("PostgreSQL: %v", err)
		return 1
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		logf("PostgreSQL: %v", err)
		return 1
	}
	defer conn.Close(context.Background())
	// The tables, created before the committer starts (it would create
	// them too).
	if err := buffer.Migrate(ctx, conn, buffer.IngestHandlers()); err != nil {
		logf("PostgreSQL: %v", err)
		return 1
	}

	rep := report{Clients: o.clients, Procs: o.procs, Duration: o.duration.String(), CPUs: runtime.NumCPU(),
		LoadIn: fmt.Sprintf("%d separate OS processes (this program run with -role)", o.procs)}

	// 1. Baseline, on its own NATS server, gone before the ingest phase.
	logf("baseline: %d JetStream publishers in %d processes, one fsynced publish per write, for %s", o.clients, o.procs, o.duration)
	if rep.Baseline, err = runBaseline(ctx, o, dir, pg.PID()); err != nil {
		logf("baseline: %v", err)
		return 1
	}
	logf("baseline: %.0f writes/s, p99 %.2f ms", rep.Baseline.PerSecond, rep.Baseline.P99MS)

	// 2. Ingest through the buffer, the committer draining meanwhile.
	natsAddr, err := freeAddr()
	if err != nil {
		logf("%v", err)
		return 1
	}
	svc, err := buffer.StartService(ctx, buffer.ServiceConfig{
		Embedded:  buffer.EmbeddedConfig{Addr: natsAddr, StoreDir: filepath.Join(dir, "nats")},
		Committer: buffer.DefaultCommitterConfig(dsn),
		Ingest:    buffer.DefaultIngestConfig(),
		Handlers:  buffer.IngestHandlers(),
	}, log)
	if err != nil {
		logf("buffer: %v", err)
		return 1
	}
	defer svc.Close()
	mux := http.NewServeMux()
	svc.Register(mux)
	svc.RegisterAdmin(mux, func(h http.HandlerFunc) http.HandlerFunc { return h })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logf("%v", err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	status := func() (buffer.Status, error) { return getStatus(ctx, base+"/v1/buffer/status") }

	before, err := status()
	if err != nil {
		logf("buffer status: %v", err)
		return 1
	}
	logf("ingest: %d HTTP clients in %d processes posting to %s/v1/writes for %s", o.clients, o.procs, base, o.duration)
	stopProfile := func() {}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			logf("%v", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			logf("cpu profile: %v", err)
			return 1
		}
		stopProfile = pprof.StopCPUProfile
	}
	rep.Ingest, err = runPhase(ctx, o, roleHTTP, base+"/v1/writes", pg.PID())
	stopProfile()
	if err != nil {
		logf("ingest: %v", err)
		return 1
	}
	atEnd, err := status()
	if err != nil {
		logf("buffer status: %v", err)
		return 1
	}
	drainStart := time.Now()
	logf("ingest: %.0f writes/s, p99 %.2f ms", rep.Ingest.PerSecond, rep.Ingest.P99MS)
	ratio := 0.0
	if rep.Baseline.PerSecond > 0 {
		ratio = rep.Ingest.PerSecond / rep.Baseline.PerSecond
		rep.Ratio = round(ratio, 3)
	}
	d := &rep.Drain
	d.CommittedDuringIngest = atEnd.Committed - before.Committed
	if rep.Ingest.Seconds > 0 {
		d.CommitRateIngest = round(float64(d.CommittedDuringIngest)/rep.Ingest.Seconds, 1)
	}
	d.PendingAtEnd, d.OldestPendingSec, d.PendingBatches = atEnd.Pending, atEnd.OldestPendingSeconds, atEnd.StreamBatches

	// 3. Drain: until every stored write is settled.
	logf("drain: %d writes pending in %d batches", atEnd.Pending, atEnd.StreamBatches)
	serverCPU0, pgCPU0 := cpuSeconds(syscall.RUSAGE_SELF), postgresCPUSeconds(pg.PID())
	final, err := waitDrained(ctx, status, o.drainTimeout)
	if err != nil {
		logf("drain: %v", err)
		return 1
	}
	drained := time.Since(drainStart)
	d.Seconds = round(drained.Seconds(), 3)
	d.ServerCPU = round(cpuSeconds(syscall.RUSAGE_SELF)-serverCPU0, 2)
	d.PostgresCPU = round(postgresCPUSeconds(pg.PID())-pgCPU0, 2)
	d.OldestPendingSec = round(d.OldestPendingSec, 3)
	d.CommittedInDrain = final.Committed - atEnd.Committed
	d.PerSecond = round(float64(d.CommittedInDrain)/drained.Seconds(), 1)
	d.Duplicates, d.TransientRetries, d.DeadLettered = final.Duplicates, final.TransientRetries, final.DeadLettered
	logf("drain: committed in %.1f s", d.Seconds)

	// Verify.
	v := &rep.Verify
	v.Acknowledged, v.Stored = rep.Ingest.Writes, final.Accepted
	var sum string
	if err := conn.QueryRow(ctx, sumSQL).Scan(&v.Rows, &sum); err != nil {
		logf("verify: %v", err)
		return 1
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM holdfast_buffer_applied WHERE kind = $1", buffer.KindIngest).Scan(&v.AppliedKeys); err != nil {
		logf("verify: %v", err)
		return 1
	}
	v.KeysMatch = sum == rep.Ingest.sum.String()
	v.OK = v.Rows == int64(v.Acknowledged) && v.AppliedKeys == int64(v.Acknowledged) && v.KeysMatch

	failures := rep.Ingest.Non202 + rep.Ingest.Errors
	// Shown rounded towards failing, so that a missed target never looks met.
	floor2 := func(x float64) float64 { return math.Floor(x*100) / 100 }
	ceil2 := func(x float64) float64 { return math.Ceil(x*100) / 100 }
	rep.Targets = []check{
		{"acknowledged writes/s", ">= 20000", fmt.Sprintf("%.0f", math.Floor(rep.Ingest.PerSecond)), rep.Ingest.PerSecond >= 20000},
		{"p99 acknowledgement latency", "<= 10 ms", fmt.Sprintf("%.2f ms", ceil2(rep.Ingest.P99MS)), rep.Ingest.P99MS <= 10},
		{"ingest / fsync-per-write baseline", ">= 4x", fmt.Sprintf("%.2fx", floor2(ratio)), ratio >= 4},
		{"writes not acknowledged (non-202, no answer)", "0", fmt.Sprint(failures), failures == 0},
		{"acknowledged writes in table ingest, once", "all", fmt.Sprintf("%d rows for %d acks, keys match: %v", v.Rows, v.Acknowledged, yesNo(v.KeysMatch)), v.OK},
	}
	if o.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			logf("%v", err)
			return 1
		}
	} else {
		printReport(os.Stdout, rep)
	}
	if !v.OK || failures > 0 {
		return 1
	}
	return 0
}

// runBaseline publishes to a plain stream (limits retention, file storage,
// one replica) on a NATS server of its own, started like the buffer's
// (sync always), which it stops and removes afterwards.
func runBaseline(ctx context.Context, o options, dir string, pgPID int) (phase, error) {
	addr, err := freeAddr()
	if err != nil {
		return phase{}, err
	}
	store := filepath.Join(dir, "nats-baseline")
	defer os.RemoveAll(store)
	srv, err := buffer.StartEmbedded(buffer.EmbeddedConfig{Addr: addr, StoreDir: store})
	if err != nil {
		return phase{}, err
	}
	defer srv.Close()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return phase{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return phase{}, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: baselineStream, Subjects: []string{baselineSubject},
		Storage: jetstream.FileStorage, Replicas: 1}); err != nil {
		return phase{}, err
	}
	p, err := runPhase(ctx, o, roleJetStream, srv.ClientURL(), pgPID)
	if err != nil {
		return p, err
	}
	// Every acknowledged publish must be in the stream.
	s, err := js.Stream(ctx, baselineStream)
	if err != nil {
		return p, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return p, err
	}
	if info.State.Msgs != p.Writes {
		return p, fmt.Errorf("%d messages in the stream for %d acknowledged publishes", info.State.Msgs, p.Writes)
	}
	return p, nil
}

func getStatus(ctx context.Context, url string) (buffer.Status, error) {
	var st buffer.Status
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// waitDrained polls the buffer's status until every write it stored is
// settled: committed (or found committed before), or dead-lettered. It
// gives up after timeout, or if nothing is committed for two minutes.
func waitDrained(ctx context.Context, status func() (buffer.Status, error), timeout time.Duration) (buffer.Status, error) {
	const stall = 2 * time.Minute
	deadline := time.Now().Add(timeout)
	var (
		last     buffer.Status
		progress = time.Now()
	)
	for {
		st, err := status()
		if err == nil {
			if st.Pending == 0 && st.Committed+st.Duplicates+st.DeadLettered >= st.Accepted {
				return st, nil
			}
			if st.Committed != last.Committed {
				progress = time.Now()
			}
			last = st
		}
		switch {
		case time.Now().After(deadline):
			return last, fmt.Errorf("not drained within %s: %+v (last error: %v)", timeout, last, err)
		case time.Since(progress) > stall:
			return last, fmt.Errorf("no write committed for %s: %+v (last error: %v)", stall, last, err)
		}
		select {
		case <-ctx.Done():
			return last, errors.Join(ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
