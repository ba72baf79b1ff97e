package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/postgres"
	"github.com/holdfast/holdfast/internal/store"
)

// Version is reported in the member's published state.
var Version = "dev"

// pgUnhealthyAfter is how long status queries must fail against a running
// postmaster before the agent treats PostgreSQL as down. A crash is seen at
// once through the process exit; this covers a hung server.
const pgUnhealthyAfter = 3 * time.Second

// standbyReadyWait bounds how long a standby start waits for PostgreSQL to
// accept connections before the loop goes on (recovery goes on too).
const standbyReadyWait = 5 * time.Second

// Agent runs one member. Create it with New, then call Run.
type Agent struct {
	cfg     config.Config
	me      config.Member
	region  string
	dir     string
	log     *slog.Logger
	st      *store.Store
	pg      *postgres.Instance
	admin   config.Credentials
	repl    config.Credentials
	metrics *metrics
	// hb is the replica's lag in time, fed by heartbeatLoop.
	hb lagTracker

	// leaseMu guards lease and validUntil, shared with the lease goroutines.
	leaseMu    sync.Mutex
	lease      store.LeaseID
	validUntil time.Time
	// leading is true while PostgreSQL is, or may become, writable under our
	// leader key; the lease guard fences PostgreSQL when it is set.
	leading atomic.Bool
	wake    chan struct{}
	lost    chan struct{}
	// expectExit is set while the agent itself stops PostgreSQL, so that the
	// exit is not taken for a crash.
	expectExit atomic.Bool
	// exitCh is the exit channel of the postmaster this agent started; nil
	// when none (owned by the Run goroutine).
	exitCh <-chan struct{}

	// Everything below is owned by the Run goroutine.
	topo    cluster.Topology
	topoRev int64
	leader  *cluster.Leader
	// leaders holds every region's leader (the primary region's one is the
	// upstream of a standby region's leader).
	leaders    map[string]cluster.Leader
	members    map[string]cluster.Member
	lostRev    int64
	lostAt     time.Time
	pubLostRev int64
	// detachedRev is the leaderless period (lostRev) for which the WAL
	// receiver is known stopped: only then is a reported WAL position final.
	detachedRev int64
	// standby is the mode PostgreSQL was last started or promoted in.
	standby     bool
	upstream    string
	followSince time.Time
	// firstXID and pgStartedUS name this primary's incarnation (see
	// cluster.Member.FirstXID), read on its first report as primary after
	// it became writable; xidKnown says they are, and until then the
	// heartbeat writes nothing, so that no id is handed out before.
	firstXID    uint64
	pgStartedUS int64
	xidKnown    atomic.Bool
	// rcvRestarted is when the WAL receiver was last stopped because it
	// streamed from another server than the upstream.
	rcvRestarted time.Time
	// waitWhy is the last reason logged by waitingFor, since waitSince,
	// last logged at waitLogged.
	waitWhy               string
	waitSince, waitLogged time.Time
	// startFailures counts failed starts in a row, startRetryAt is when
	// the next may be tried; rewoundAt is when pg_rewind last succeeded.
	startFailures int
	startRetryAt  time.Time
	// repairFailures counts failed rewinds and copies in a row (their
	// source down, say), repairRetryAt is when the next may run.
	repairFailures int
	repairRetryAt  time.Time
	rewoundAt      time.Time
	// streamedAt is when the WAL receiver was last seen streaming.
	streamedAt time.Time
	// divergeChecked is when the upstream's timeline history was last read
	// to tell whether our WAL left it.
	divergeChecked time.Time
	statusOK       time.Time
	lastStatus     postgres.Status
	// statusFresh says the last observe read PostgreSQL's status; false
	// when it kept an earlier reading (a status query that failed).
	statusFresh bool
	// timelineSeen is the highest timeline observed since PostgreSQL last
	// started (reset by startPG).
	timelineSeen int
	state        cluster.State
	generation   int64
	lastPlan     cluster.Plan
	backoff      actionBackoff // spaces out a plan that keeps failing
	// promoteFails counts our promotions that failed in a row; reset by
	// one that succeeds, once we stream from a leader, and promoteRetryAfter
	// after the last failure (see cluster.MaxPromoteFailures).
	promoteFails    int
	promoteFailedAt time.Time
	lastErr         string
	blockedRev      int64
	syncList        []string
	syncPending     *syncShrink
	lastPublish     time.Time
	published       cluster.Member
	lastMaint       time.Time
}

// New prepares the agent for member name. It opens nothing yet.
func New(cfg config.Config, name string, st *store.Store, log *slog.Logger) (*Agent, error) {
	m, r, ok := cfg.FindMember(name)
	if !ok {
		return nil, fmt.Errorf("agent: member %q is not in the config (members: %v)", name, cfg.MemberNames())
	}
	admin, repl, err := cfg.LoadSecrets()
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", name, err)
	}
	dir := cfg.MemberDir(m)
	log = log.With("component", "agent", "member", name)
	pg, err := postgres.New(PostgresConfig(cfg, m, admin, repl), log)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", name, err)
	}
	if err := pg.RecoverRecopy(); err != nil {
		return nil, fmt.Errorf("agent %s: %w", name, err)
	}
	return &Agent{
		cfg: cfg, me: m, region: r.Name, dir: dir, log: log, st: st, pg: pg,
		admin: admin, repl: repl,
		wake: make(chan struct{}, 1), lost: make(chan struct{}, 1),
		members: map[string]cluster.Member{}, leaders: map[string]cluster.Leader{}, state: cluster.StateStarting, standby: true,
		metrics: newMetrics(name),
		hb:      lagTracker{interval: cfg.Agent.HeartbeatInterval.D()},
	}, nil
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run runs the member until ctx ends, then stops PostgreSQL and gives up the
// lease (so that, unless the cluster is paused, a replica takes over at once).
func (a *Agent) Run(ctx context.Context) error {
	stopMetrics, err := a.serveMetrics(ctx)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if err := a.checkDataDir(ctx); err != nil {
		return err
	}
	if err := a.grantLease(ctx); err != nil {
		return err
	}
	a.event(ctx, cluster.EventAgentStarted, "agent started (pid %d)", os.Getpid())

	var wg sync.WaitGroup
	lctx, stopLease := context.WithCancel(context.Background())
	wg.Add(3)
	go func() { defer wg.Done(); a.renewLoop(lctx) }()
	go func() { defer wg.Done(); a.guardLoop(lctx) }()
	go func() { defer wg.Done(); a.heartbeatLoop(lctx) }()
	defer func() {
		stopLease()
		wg.Wait()
	}()

	err = a.loop(ctx)
	a.shutdown()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// checkDataDir refuses a data directory that belongs to another cluster and
// marks a former primary as needing a rewind before it may replicate.
func (a *Agent) checkDataDir(ctx context.Context) error {
	// An agent restarted after a crash may find its postmaster still running.
	if err := a.pg.Stop(ctx, postgres.StopFast); err != nil {
		return fmt.Errorf("stop leftover postgres: %w", err)
	}
	if !a.pg.IsInitialized() {
		return nil
	}
	cd, err := a.pg.ControlData(ctx)
	if err != nil {
		return fmt.Errorf("agent %s: %w", a.me.Name, err)
	}
	_, sysID, err := a.st.Initialize(ctx)
	if err != nil {
		return fmt.Errorf("agent %s: read cluster identity: %w", a.me.Name, err)
	}
	if sysID != "" && cd.SystemID != sysID {
		return fmt.Errorf("agent %s: data directory %s belongs to another cluster (system identifier %s, cluster %q has %s); refusing to touch it: move it away or point data_dir elsewhere",
			a.me.Name, filepath.Join(a.dir, "pgdata"), cd.SystemID, a.cfg.Cluster, sysID)
	}
	switch cd.State {
	case "in production", "shut down", "in crash recovery":
		// Last run as a primary: its WAL may go beyond what the next leader has.
		a.markRewind("data directory was last a primary (" + cd.State + ")")
	}
	return nil
}

func (a *Agent) rewindMarker() string { return filepath.Join(a.dir, "rewind-needed") }

func (a *Agent) markRewind(why string) {
	if err := os.WriteFile(a.rewindMarker(), []byte(why+"\n"), 0o600); err != nil {
		a.log.Error("cannot record that a rewind is needed", "err", err)
	}
}

// needsRewind says whether the data directory may not be used as it is:
// it needs a rewind, or a fresh copy (needsCopy).
func (a *Agent) needsRewind() bool {
	_, err := os.Stat(a.rewindMarker())
	return err == nil || a.needsCopy()
}

// copyMarker records that only a fresh copy can repair the data directory
// (pg_rewind failed on it, and may have left it half rewound). The data
// stays until a copy is complete (postgres.Instance.Recopy): the source may
// die halfway, and a directory it needed may hold the only copy of WAL.
func (a *Agent) copyMarker() string { return filepath.Join(a.dir, "copy-needed") }

func (a *Agent) markCopy(why string) {
	if err := os.WriteFile(a.copyMarker(), []byte(why+"\n"), 0o600); err != nil {
		a.log.Error("cannot record that a fresh copy is needed", "err", err)
	}
}

func (a *Agent) needsCopy() bool {
	_, err := os.Stat(a.copyMarker())
	return err == nil
}

// primaryGenFile records the topology generation in which this member last
// became primary.
func (a *Agent) primaryGenFile() string { return filepath.Join(a.dir, "primary-generation") }

// recordPrimaryGeneration notes that we are the primary of generation gen.
func (a *Agent) recordPrimaryGeneration(gen int64) {
	if err := os.WriteFile(a.primaryGenFile(), []byte(strconv.FormatInt(gen, 10)+"\n"), 0o600); err != nil {
		a.log.Warn("cannot record the generation we are primary in", "err", err)
	}
}

// headOfHistory says whether our data directory holds the current
// timeline's newest WAL: we were the primary of the topology's current
// generation, and nobody has been promoted since (every promotion, by
// election or region failover, moves to the next generation). Every commit
// acknowledged on the timeline is then ours, whatever our rewind marker
// says, and we may stand in an election as a last resort (cluster.Local).
func (a *Agent) headOfHistory() bool {
	if a.topo.Generation == 0 || a.region != a.topo.PrimaryRegion || !a.pg.IsInitialized() || a.needsCopy() {
		return false
	}
	b, err := os.ReadFile(a.primaryGenFile())
	if err != nil {
		return false
	}
	gen, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return err == nil && gen == a.topo.Generation
}

// repaired forgets the markers once the data directory is usable again.
func (a *Agent) repaired() {
	_ = os.Remove(a.rewindMarker())
	_ = os.Remove(a.copyMarker())
}

func (a *Agent) others() []string {
	var out []string
	for _, r := range a.cfg.Regions {
		if r.Name != a.region {
			continue
		}
		for _, m := range r.Members {
			if m.Name != a.me.Name {
				out = append(out, m.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// startPG starts PostgreSQL and watches for its exit.
func (a *Agent) startPG(ctx context.Context) error {
	a.expectExit.Store(false)
	a.timelineSeen = 0
	// Nothing observed of the previous postmaster describes the new one.
	a.statusOK, a.lastStatus = time.Time{}, postgres.Status{}
	a.xidKnown.Store(false)
	stop := a.inProgress(ctx, "starting postgres (WAL replay may take a while)")
	err := a.pg.Start(ctx)
	stop()
	if err != nil {
		return err
	}
	a.exitCh = a.pg.Exited()
	return nil
}

// regionSlots are the slot names of the other members of our region (a
// standby leader keeps them for the members cascading from it).
func (a *Agent) regionSlots() []string {
	var out []string
	for _, n := range a.others() {
		out = append(out, postgres.SlotName(n))
	}
	return out
}

// primaryLeader is the primary region's leader when we are in another
// region, nil otherwise or when there is none.
func (a *Agent) primaryLeader() *cluster.Leader {
	pr := a.topo.PrimaryRegion
	if pr == "" || pr == a.region {
		return nil
	}
	if l, ok := a.leaders[pr]; ok {
		return &l
	}
	return nil
}

// peerSlots are the replication slot names of every other member.
func (a *Agent) peerSlots() []string {
	var out []string
	for _, n := range a.allOtherMembers() {
		out = append(out, postgres.SlotName(n))
	}
	return out
}

func (a *Agent) allOtherMembers() []string {
	var out []string
	for _, n := range a.cfg.MemberNames() {
		if n != a.me.Name {
			out = append(out, n)
		}
	}
	return out
}

// connInfo is how this agent reaches member name: as superuser (for
// pg_rewind) or as the replication role.
func (a *Agent) connInfo(name string, superuser bool) (postgres.ConnInfo, error) {
	m, _, ok := a.cfg.FindMember(name)
	if !ok {
		return postgres.ConnInfo{}, fmt.Errorf("member %q is not in the config", name)
	}
	ci := postgres.ConnInfo{Host: m.Host, Port: m.ReachPort(), User: a.repl.User, Password: a.repl.Password, AppName: a.me.Name, ConnectTimeout: 2 * time.Second}
	if superuser {
		ci.User, ci.Password, ci.DBName = a.admin.User, a.admin.Password, "postgres"
	}
	return ci, nil
}

func (a *Agent) event(ctx context.Context, kind, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	a.log.Info(msg, "event", kind)
	a.metrics.events.WithLabelValues(kind).Inc()
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := a.st.AppendEvent(ectx, cluster.Event{Kind: kind, Member: a.me.Name, Generation: a.topo.Generation, Message: msg}); err != nil {
		a.log.Warn("cannot record event", "kind", kind, "err", err)
	}
}

func (a *Agent) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a.expectExit.Store(true)
	if err := a.pg.Stop(ctx, postgres.StopFast); err != nil {
		a.log.Error("stop postgres", "err", err)
	}
	if a.leading.Load() {
		a.markRewind("stopped while primary")
	}
	a.leading.Store(false)
	a.event(ctx, cluster.EventAgentStopped, "agent stopped")
	a.leaseMu.Lock()
	lease := a.lease
	a.leaseMu.Unlock()
	if err := a.st.RevokeLease(ctx, lease); err != nil {
		a.log.Warn("revoke lease", "err", err)
	}
}

// PostgresConfig is how member m's PostgreSQL instance is laid out: data in
// <member dir>/pgdata, settings and socket in <member dir>/conf (outside the
// data directory, where pg_rewind and pg_basebackup cannot overwrite them).
func PostgresConfig(cfg config.Config, m config.Member, admin, repl config.Credentials) postgres.Config {
	dir := cfg.MemberDir(m)
	return postgres.Config{
		Name:          m.Name,
		BinDir:        cfg.Postgres.BinDir,
		DataDir:       filepath.Join(dir, "pgdata"),
		ConfDir:       filepath.Join(dir, "conf"),
		ListenAddr:    m.Host,
		Port:          m.Port,
		OSUser:        cfg.Postgres.OSUser,
		SuperUser:     admin.User,
		SuperPassword: admin.Password,
		ReplUser:      repl.User,
		ReplPassword:  repl.Password,
		Parameters:    cfg.Postgres.Parameters,
	}
}
