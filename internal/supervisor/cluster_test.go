package supervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/supervisor"
	"github.com/holdfast/holdfast/internal/testutil"
)

// harness is one real cluster: embedded etcd, three agent processes, three
// PostgreSQL instances, on free ports in a temp dir.
type harness struct {
	t   *testing.T
	cfg config.Config
	sup *supervisor.Supervisor
	app config.Credentials

	sampleStop chan struct{}
	sampleDone chan struct{}
	mu         sync.Mutex
	violations []string // guarded by mu
	samples    int      // guarded by mu
}

type testLog struct {
	t  *testing.T
	mu sync.Mutex
	b  strings.Builder
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func startCluster(t *testing.T) *harness {
	t.Helper()
	return startClusterWith(t, 3*time.Second)
}

// startClusterWith starts a cluster whose dead agents are restarted after
// restartDelay.
func startClusterWith(t *testing.T, restartDelay time.Duration) *harness {
	t.Helper()
	if !testutil.HavePostgres() {
		t.Skip("PostgreSQL 15 is not installed (run scripts/install-deps.sh)")
	}
	return startClusterConfig(t, testutil.ClusterConfig(t, "it"), restartDelay)
}

// startClusterConfig starts the deployment cfg describes.
func startClusterConfig(t *testing.T, cfg config.Config, restartDelay time.Duration) *harness {
	t.Helper()
	if !testutil.HavePostgres() {
		t.Skip("PostgreSQL 15 is not installed (run scripts/install-deps.sh)")
	}
	bin := testutil.Binary(t)
	out := &testLog{t: t}
	sup, err := supervisor.New(supervisor.Config{Deployment: cfg, Binary: bin, Out: out, RestartDelay: restartDelay}, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sup.Open(ctx); err != nil {
		t.Fatalf("open: %v\n%s", err, out.b.String())
	}
	cfg.Resolve()
	h := &harness{t: t, cfg: cfg, sup: sup}
	t.Cleanup(func() {
		h.stopSampling()
		_ = sup.Close(context.Background())
		if t.Failed() {
			out.mu.Lock()
			t.Logf("supervisor output:\n%s", out.b.String())
			out.mu.Unlock()
		}
	})
	_, _, h.app, err = cfg.EnsureSecrets()
	if err != nil {
		t.Fatal(err)
	}
	h.startSampling()
	return h
}

func (h *harness) status() admin.ClusterStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := admin.Status(ctx, h.sup.Store(), h.cfg)
	if err != nil {
		h.t.Fatalf("status: %v", err)
	}
	return s
}

func (h *harness) member(s admin.ClusterStatus, name string) admin.MemberStatus {
	for _, m := range s.Members {
		if m.Name == name {
			return m
		}
	}
	h.t.Fatalf("member %s not in status", name)
	return admin.MemberStatus{}
}

func (h *harness) dsn(m admin.MemberStatus) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s connect_timeout=2", m.Host, m.Port, h.app.User, h.app.Password, h.app.Database)
}

// primaryDSN is the writer's target: the member holding the leader key and
// reporting itself primary.
func (h *harness) primaryDSN() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := admin.Status(ctx, h.sup.Store(), h.cfg)
	if err != nil {
		return ""
	}
	for _, m := range s.Members {
		if m.Role == cluster.RolePrimary && m.Leader {
			return h.dsn(m)
		}
	}
	return ""
}

// startSampling checks, every 20 ms, that no two members report primary
// for the same generation.
func (h *harness) startSampling() {
	h.sampleStop, h.sampleDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.sampleDone)
		for {
			select {
			case <-h.sampleStop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			snap, err := h.sup.Store().Snapshot(ctx)
			cancel()
			if err != nil {
				continue
			}
			byGen := map[int64][]string{}
			for _, m := range snap.Members {
				if m.Role == cluster.RolePrimary {
					byGen[m.Generation] = append(byGen[m.Generation], m.Name)
				}
			}
			h.mu.Lock()
			h.samples++
			for g, names := range byGen {
				if len(names) > 1 {
					h.violations = append(h.violations, fmt.Sprintf("generation %d: %v all report primary", g, names))
				}
			}
			h.mu.Unlock()
		}
	}()
}

func (h *harness) stopSampling() {
	if h.sampleStop == nil {
		return
	}
	select {
	case <-h.sampleStop:
		return
	default:
	}
	close(h.sampleStop)
	<-h.sampleDone
}

func (h *harness) checkSamples() {
	h.t.Helper()
	h.stopSampling()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.samples < 10 {
		h.t.Errorf("only %d status samples taken", h.samples)
	}
	for _, v := range h.violations {
		h.t.Errorf("two primaries: %s", v)
	}
}

func (h *harness) primary() admin.MemberStatus {
	var p admin.MemberStatus
	testutil.Eventually(h.t, 30*time.Second, "a primary", func() error {
		for _, m := range h.status().Members {
			if m.Role == cluster.RolePrimary && m.Leader && m.State == cluster.StateRunning {
				p = m
				return nil
			}
		}
		return testutil.ErrNotYet
	})
	return p
}

// newPrimary waits for a running primary other than old, in a later generation.
func (h *harness) newPrimary(old admin.MemberStatus) admin.MemberStatus {
	var p admin.MemberStatus
	testutil.Eventually(h.t, 30*time.Second, "a new primary", func() error {
		for _, m := range h.status().Members {
			if m.Role == cluster.RolePrimary && m.Leader && m.State == cluster.StateRunning && m.Name != old.Name && m.Generation > old.Generation {
				p = m
				return nil
			}
		}
		return testutil.ErrNotYet
	})
	return p
}

// rejoined waits until name runs as a streaming replica on the primary's timeline.
func (h *harness) rejoined(name string, primary admin.MemberStatus) {
	testutil.Eventually(h.t, 60*time.Second, name+" rejoining as a replica", func() error {
		s := h.status()
		m := h.member(s, name)
		p := h.member(s, primary.Name)
		if m.Role == cluster.RoleReplica && m.State == cluster.StateRunning && m.Timeline == p.Timeline && m.Sync {
			return nil
		}
		return fmt.Errorf("%s is %s/%s on timeline %d (primary on %d), sync=%v", name, m.Role, m.State, m.Timeline, p.Timeline, m.Sync)
	})
}

func (h *harness) startWriter() *testutil.Writer {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testutil.CreateTable(ctx, h.dsn(h.primary())); err != nil {
		h.t.Fatalf("create table: %v", err)
	}
	w := &testutil.Writer{Target: h.primaryDSN}
	w.Start()
	if err := w.WaitAcked(ctx, 50); err != nil {
		h.t.Fatal(err)
	}
	return w
}

// finish stops the writer after more writes on the new primary and checks
// that every acknowledged write is there.
func (h *harness) finish(w *testutil.Writer, primary admin.MemberStatus) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WaitAcked(ctx, 50); err != nil {
		h.t.Fatal(err)
	}
	w.Stop()
	n, err := w.Verify(ctx, h.dsn(primary))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Logf("%d acknowledged writes, all present on %s", n, primary.Name)
	h.checkSamples()
}

func TestKillPostmasterUnderWrites(t *testing.T) {
	h := startCluster(t)
	w := h.startWriter()
	old := h.primary()
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p := h.newPrimary(old)
	h.rejoined(old.Name, p)
	h.finish(w, p)

	// The new primary's agent says so in its Prometheus metrics.
	m, _, _ := h.cfg.FindMember(p.Name)
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/metrics", m.Host, m.MetricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`holdfast_member_leader{member=%q} 1`, p.Name),
		fmt.Sprintf(`holdfast_member_role{member=%q,role="primary"} 1`, p.Name),
		fmt.Sprintf(`holdfast_member_events_total{kind="promoted",member=%q} 1`, p.Name),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestBackendCrashFailsOver: one crashed backend of the primary takes its
// postmaster down (restart_after_crash = off) and the cluster fails over as
// for a crashed postmaster, rather than PostgreSQL reinitialising in place
// behind the agent's back.
func TestBackendCrashFailsOver(t *testing.T) {
	h := startCluster(t)
	w := h.startWriter()
	old := h.primary()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.dsn(old))
	if err != nil {
		t.Fatal(err)
	}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(backend, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	p := h.newPrimary(old)
	h.rejoined(old.Name, p)
	h.finish(w, p)
}

func TestNodeLossAgentAndPostmaster(t *testing.T) {
	h := startCluster(t)
	w := h.startWriter()
	old := h.primary()
	if err := syscall.Kill(old.AgentPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p := h.newPrimary(old)
	// The supervisor restarts the dead agent (a reboot); it rejoins.
	h.rejoined(old.Name, p)
	h.finish(w, p)
}

// TestFrozenPrimaryNeverAcceptsWritesAgain freezes the whole node: the
// agent, and the postmaster with all its children (its process group).
func TestFrozenPrimaryNeverAcceptsWritesAgain(t *testing.T) { testFrozenPrimary(t, true) }

// TestFrozenAgentAndPostmaster freezes only the agent and the postmaster:
// existing backends and WAL senders keep running, so the old primary can
// still commit on open connections until the replicas detach from it.
func TestFrozenAgentAndPostmaster(t *testing.T) { testFrozenPrimary(t, false) }

func testFrozenPrimary(t *testing.T, wholeGroup bool) {
	h := startCluster(t)
	w := h.startWriter()
	old := h.primary()
	pm := old.PID
	if wholeGroup {
		pm = -old.PID
	}
	stop := func(sig syscall.Signal) {
		if err := syscall.Kill(old.AgentPID, sig); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pm, sig); err != nil {
			t.Fatal(err)
		}
	}
	// A client that knows nothing of failover keeps writing on its open
	// connection to the old primary. What it is told was committed must
	// survive too.
	oldDSN := h.dsn(old)
	stubborn := &testutil.Writer{Target: func() string { return oldDSN }, IDBase: 1 << 40}
	stubborn.Start()
	{
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := stubborn.WaitAcked(ctx, 20)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	stop(syscall.SIGSTOP)
	p := h.newPrimary(old)
	stop(syscall.SIGCONT)

	// Until it has rejoined, the old primary must not acknowledge a write.
	dsn := h.dsn(old)
	var attempts, accepted int
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		attempts++
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			_, err = conn.Exec(ctx, "INSERT INTO acked (id) VALUES ($1)", -int64(attempts))
			if err == nil {
				accepted++
			}
			conn.Close(context.Background())
		}
		cancel()
		m := h.member(h.status(), old.Name)
		if m.Role == cluster.RoleReplica && m.State == cluster.StateRunning {
			break
		}
	}
	if accepted > 0 {
		t.Errorf("the deposed primary accepted %d of %d writes after waking up", accepted, attempts)
	}
	t.Logf("%d write attempts on the deposed primary, none accepted", attempts)
	h.rejoined(old.Name, p)
	stubborn.Stop()
	{
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err := stubborn.Verify(ctx, h.dsn(p))
		cancel()
		if err != nil {
			t.Fatalf("writes acknowledged to a client of the old primary: %v", err)
		}
		t.Logf("%d writes acknowledged on the old primary's open connection, all present on %s", n, p.Name)
	}
	h.finish(w, p)
	// None of the probe rows may exist on the new timeline either.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.dsn(p))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM acked WHERE id < 0").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d writes made on the deposed primary reached the new primary", n)
	}
}

func TestSwitchoverUnderWrites(t *testing.T) {
	h := startCluster(t)
	w := h.startWriter()
	old := h.primary()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The CLI: status --json keeps its contract; refusals exit 1.
	cli := func(args ...string) (int, []byte) {
		cmd := exec.Command(testutil.Binary(t), append(args, "--config", h.sup.ConfigPath)...)
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out
	}
	code, out := cli("status", "--json")
	var st map[string]any
	if code != 0 || json.Unmarshal(out, &st) != nil {
		t.Fatalf("status --json: exit %d, %s", code, out)
	}
	for _, k := range []string{"cluster", "primary", "generation", "members"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status --json lacks %q: %s", k, out)
		}
	}
	members, _ := st["members"].([]any)
	if len(members) != 3 {
		t.Fatalf("status --json: want 3 members: %s", out)
	}
	m0, _ := members[0].(map[string]any)
	for _, k := range []string{"name", "region", "zone", "role", "state", "host", "port", "timeline", "lsn", "lag_bytes", "sync", "pid", "agent_pid"} {
		if _, ok := m0[k]; !ok {
			t.Errorf("status --json member lacks %q: %v", k, m0)
		}
	}
	// `. DIR/secrets/app.env; psql -h 127.0.0.1 -p PORT` works as documented.
	psql := exec.Command("bash", "-c", fmt.Sprintf(". %s; psql -h 127.0.0.1 -p %d -Atc 'select current_user, current_database()'",
		filepath.Join(h.cfg.Postgres.SecretsDir, config.AppSecrets), old.Port))
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "app|app" {
		t.Errorf("psql with app.env: %v: %s", err, out)
	}
	// ... and through the proxy's writer endpoint that `up` starts.
	phost, pport, _ := net.SplitHostPort(h.cfg.Proxy.WriterAddr)
	psql = exec.Command("bash", "-c", fmt.Sprintf(". %s; psql -h %s -p %s -Atc 'select pg_is_in_recovery()'",
		filepath.Join(h.cfg.Postgres.SecretsDir, config.AppSecrets), phost, pport))
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "f" {
		t.Errorf("psql through the proxy writer: %v: %s", err, out)
	}
	if code, _ := cli("switchover", "--to", "nobody"); code != 1 {
		t.Errorf("switchover to an unknown member exited %d, want 1", code)
	}

	// Refusals change nothing.
	if _, err := admin.Switchover(ctx, h.sup.Store(), h.cfg, "nobody", func(string) {}); err == nil {
		t.Fatal("switchover to an unknown member succeeded")
	}
	if _, err := admin.Switchover(ctx, h.sup.Store(), h.cfg, old.Name, func(string) {}); err == nil {
		t.Fatal("switchover to the primary itself succeeded")
	}
	if s := h.status(); s.Primary != old.Name || s.Generation != old.Generation {
		t.Fatalf("a refused switchover changed the cluster: %+v", s)
	}

	var target string
	for _, m := range h.status().Members {
		if m.Name != old.Name {
			target = m.Name
			break
		}
	}
	res, err := admin.Switchover(ctx, h.sup.Store(), h.cfg, target, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("switchover %s -> %s took %s", res.From, res.To, res.Took)
	p := h.primary()
	if p.Name != target {
		t.Fatalf("primary is %s, want %s", p.Name, target)
	}
	h.rejoined(old.Name, p)
	h.finish(w, p)
}

// waitEvent waits for an event of kind (from any member) after start.
func (h *harness) waitEvent(kind string, start time.Time) cluster.Event {
	var ev cluster.Event
	testutil.Eventually(h.t, 30*time.Second, "event "+kind, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		evs, err := h.sup.Store().Events(ctx, 200)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Kind == kind && e.Time.After(start) {
				ev = e
				return nil
			}
		}
		return testutil.ErrNotYet
	})
	return ev
}

func TestPausedClusterRestartsPrimaryInPlace(t *testing.T) {
	h := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.SetPaused(ctx, h.sup.Store(), true); err != nil {
		t.Fatal(err)
	}
	old := h.primary()
	start := time.Now()
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(cluster.EventPostgresRestarted, start)
	p := h.primary()
	if p.Name != old.Name || p.Generation != old.Generation {
		t.Fatalf("paused cluster changed primary: %s gen %d -> %s gen %d", old.Name, old.Generation, p.Name, p.Generation)
	}
	if err := admin.SetPaused(ctx, h.sup.Store(), false); err != nil {
		t.Fatal(err)
	}
	if s := h.status(); s.Paused {
		t.Fatal("still paused after resume")
	}
	h.checkSamples()
}

func TestQuorumLossRefusesAutomaticPromotion(t *testing.T) {
	// Dead agents stay dead for the whole test.
	h := startClusterWith(t, time.Hour)
	old := h.primary()
	// The second replica joins the synchronous set once it streams.
	var s admin.ClusterStatus
	testutil.Eventually(t, 30*time.Second, "two synchronous members", func() error {
		if s = h.status(); len(s.SyncSet) != 2 {
			return fmt.Errorf("synchronous members %v", s.SyncSet)
		}
		return nil
	})
	// Lose the primary and one synchronous replica together: the survivor
	// alone cannot know whether the other had commits it lacks.
	lost := s.SyncSet[0]
	survivor := s.SyncSet[1]
	start := time.Now()
	for _, name := range []string{old.Name, lost} {
		m := h.member(s, name)
		_ = syscall.Kill(m.AgentPID, syscall.SIGKILL)
		_ = syscall.Kill(m.PID, syscall.SIGKILL)
	}
	ev := h.waitEvent(cluster.EventFailoverBlocked, start)
	if ev.Member != survivor || !strings.Contains(ev.Message, "R + W <= N") {
		t.Fatalf("unexpected blocked event: %+v", ev)
	}
	// A few more decision rounds must not promote it either.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if p := h.status().Primary; p != "" {
			t.Fatalf("%s was promoted automatically without a quorum", p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Without --allow-data-loss a manual failover keeps the rules.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := h.cfg
	cfg.Failover.SwitchoverTimeout = config.Duration(3 * time.Second)
	if _, err := admin.Failover(ctx, h.sup.Store(), cfg, survivor, false, func(string) {}); err == nil {
		t.Fatal("failover without --allow-data-loss succeeded without a quorum")
	}
	res, err := admin.Failover(ctx, h.sup.Store(), h.cfg, survivor, true, func(m string) { t.Log(m) })
	if err != nil {
		t.Fatal(err)
	}
	if res.To != survivor {
		t.Fatalf("failover promoted %s, want %s", res.To, survivor)
	}
	if p := h.primary(); p.Name != survivor {
		t.Fatalf("primary is %s, want %s", p.Name, survivor)
	}
	h.checkSamples()
}

func TestRestartResumesCluster(t *testing.T) {
	h := startCluster(t)
	w := h.startWriter()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.WaitAcked(ctx, 20); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	before := h.status()
	h.stopSampling()
	systemID := func() string {
		snap, err := h.sup.Store().Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Topology.SystemID
	}
	id := systemID()
	if err := h.sup.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.cfg.DataDir, "cluster.json")); err != nil {
		t.Fatal(err)
	}

	// Same config, same directory: the cluster comes back with its data.
	sup, err := supervisor.New(supervisor.Config{Deployment: h.cfg, Binary: testutil.Binary(t), RestartDelay: 3 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sup.Close(context.Background()) })
	h.sup = sup
	h.startSampling()
	p := h.primary()
	if p.Generation < before.Generation {
		t.Fatalf("generation went back: %d -> %d", before.Generation, p.Generation)
	}
	if s := h.status(); s.Paused {
		t.Fatal("the cluster stayed paused after a restart")
	}
	if got := systemID(); got == "" || got != id {
		t.Fatalf("system identifier %q -> %q: the cluster was re-initialised", id, got)
	}
	n, err := w.Verify(ctx, h.dsn(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after restart %s is primary (generation %d -> %d); %d acknowledged writes present", p.Name, before.Generation, p.Generation, n)
	for _, m := range []string{"home-a", "home-b", "home-c"} {
		if m != p.Name {
			h.rejoined(m, p)
		}
	}
	h.checkSamples()
}
