package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/drill"
)

// LoopbackFaults are the faults a run on `holdfast up`'s loopback cluster
// can inject today: signals to the processes of this machine, and the
// primary's fault links (in front of its PostgreSQL, between its agent and
// etcd) cut both ways, one way, from etcd only, or slowed. A partition
// from the replicas only needs lab hosts (network namespaces: on one
// loopback, replicas and clients come from the same address), and kills
// of etcd, NATS, the proxy and the api need them out of `holdfast up`'s
// process.
var LoopbackFaults = []Fault{KillPostmaster, KillNode, PauseNode, PausePostmaster, KillReplica,
	PartitionPrimary, PartitionPrimaryEtcd, OneWayFromPrimary, OneWayToPrimary, SlowPrimary}

// SoakedFaults are the loopback faults that have run clean over the long
// soaks (docs/BENCHMARKS.md, "Chaos runs"): `make test`'s chaos run draws
// from them. The link faults added on 2026-12-08 (etcd-only, one-way and
// slowed links) found a cluster left without a primary in a 300-fault
// soak (docs/chaos.md); they run in `make chaos` and on request until it
// is fixed.
var SoakedFaults = []Fault{KillPostmaster, KillNode, PauseNode, PausePostmaster, KillReplica, PartitionPrimary}

// RunConfig is one chaos run.
type RunConfig struct {
	Plan PlanConfig
	// Paths carry the writes (drill.Paths: direct, proxy, buffer), each
	// at Rate writes per second.
	Paths []string
	Rate  float64
	// Settle bounds the wait for the cluster's health after the last heal.
	Settle time.Duration
	// NoReads turns off the sequence writer and the readers on the proxy's
	// reader endpoint (on by default when the proxy runs).
	NoReads bool
	// Progress hears a line per fault and per phase.
	Progress func(string)
}

// AppliedFault is a step of the plan as it went.
type AppliedFault struct {
	Step
	Target string    `json:"target,omitempty"`
	Start  time.Time `json:"start"`
	Error  string    `json:"error,omitempty"`
	// RecoveryMS: from the fault to the answer of the first write sent
	// after it and acknowledged (-1: none).
	RecoveryMS int64 `json:"recovery_ms"`
}

// PathResult is what one path's history showed.
type PathResult struct {
	Writes         int `json:"writes"`
	OK             int `json:"ok"`
	Errors         int `json:"errors"`
	Unknown        int `json:"unknown"`
	UnknownApplied int `json:"unknown_applied"`
	Lost           int `json:"lost"`
	Duplicates     int `json:"duplicates"`
	ErrorApplied   int `json:"error_applied"`
	TwoWriters     int `json:"two_writers"`
}

// Report is a chaos run's result: the JSON contract of `holdfast drill chaos`.
type Report struct {
	Seed       uint64                `json:"seed"`
	Faults     []AppliedFault        `json:"faults"`
	Paths      map[string]PathResult `json:"paths"`
	Violations []Violation           `json:"violations"`
	// HealthRestoredMS: from the last heal to a running primary with a
	// synchronous replica streaming.
	HealthRestoredMS int64 `json:"health_restored_ms"`
	// Reads: the readers on the reader endpoint (absent: none ran).
	Reads  *ReadResult `json:"reads,omitempty"`
	Passed bool        `json:"passed"`
	// History is the history around the first violation.
	History string `json:"history,omitempty"`
}

// LabCluster says whether a chaos run may act on this cluster: one that
// `holdfast up` runs on this machine, where every configured member has a
// fault link in front of it (advertise_port differs from port), a loopback
// address, and reports its agent's and postmaster's process ids. A run
// kills and stops processes: it refuses anything else.
func LabCluster(cfg config.Config, st admin.ClusterStatus) error {
	reported := map[string]admin.MemberStatus{}
	for _, m := range st.Members {
		reported[m.Name] = m
	}
	for _, r := range cfg.Regions {
		for _, m := range r.Members {
			if !m.HasLink() {
				return fmt.Errorf("not a lab cluster: member %s has no fault link (holdfast up runs one in front of each member)", m.Name)
			}
			if ip := net.ParseIP(m.Host); m.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("not a lab cluster: member %s is on %s, not this machine's loopback", m.Name, m.Host)
			}
			if s, ok := reported[m.Name]; ok && s.AgentPID <= 0 {
				return fmt.Errorf("not a lab cluster: member %s reports no process id", m.Name)
			}
		}
	}
	return nil
}

// Run runs a chaos run with r's cluster and reconciles it.
func Run(ctx context.Context, r *drill.Runner, rc RunConfig) (Report, error) {
	h, err := Record(ctx, r, rc)
	if err != nil {
		return Report{}, err
	}
	return Judge(ctx, r, h)
}

// History is what a chaos run recorded: every write with its invocation,
// completion and outcome, the faults as they went, the cluster's events.
// Judge reconciles it with the rows in the database.
type History struct {
	Seed uint64
	// Name is the run's drill name; path p's writes carry Name-p.
	Name  string
	Paths []string
	Ops   map[string][]Op
	// First was primary when the run started; Events are the cluster's
	// events during it (promotions make the primaries' terms).
	First   string
	Start   time.Time
	Events  []cluster.Event
	Applied []AppliedFault
	// Restored: from the last heal to a healthy cluster (-1: not within
	// the settle time).
	Restored time.Duration
	// The sequence writer's acknowledged numbers and the readers' reads,
	// judged with ReadBound (0: no reads ran).
	SeqWrites            []SeqWrite
	Reads                []Read
	ReadErrors, Sessions int
	ReadBound            time.Duration
}

// Record runs a chaos run with r's cluster: writes on every path while the
// faults of the plan come, then the wait for health and for the write
// buffer to drain.
func Record(ctx context.Context, r *drill.Runner, rc RunConfig) (*History, error) {
	for _, k := range rc.Plan.Kinds {
		if !slices.Contains(LoopbackFaults, k) {
			return nil, fmt.Errorf("fault %s: not available on a loopback cluster yet (available: %v)", k, LoopbackFaults)
		}
	}
	steps, err := Plan(rc.Plan)
	if err != nil {
		return nil, err
	}
	if len(rc.Paths) == 0 {
		rc.Paths = drill.Paths
	}
	if rc.Rate <= 0 {
		rc.Rate = 100
	}
	if rc.Settle <= 0 {
		rc.Settle = 2 * time.Minute
	}
	progress := func(format string, args ...any) {
		if rc.Progress != nil {
			rc.Progress(fmt.Sprintf(format, args...))
		}
	}
	st, err := admin.Status(ctx, r.Store, r.Cfg)
	if err != nil {
		return nil, err
	}
	if err := LabCluster(r.Cfg, st); err != nil {
		return nil, err
	}
	if err := r.CheckHealthy(ctx); err != nil {
		return nil, err
	}
	first, _ := st.PrimaryMember()
	if err := r.Prepare(ctx); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("chaos-%d-%d", rc.Plan.Seed, time.Now().UnixMilli())
	lease, stopLease, err := r.Claim(ctx, name)
	if err != nil {
		return nil, err
	}
	defer stopLease()

	// Promotions, for the terms of the primaries.
	_, rev, err := r.Store.EventLog(ctx, 1)
	if err != nil {
		return nil, err
	}
	ectx, cancelEvents := context.WithCancel(ctx)
	var events []cluster.Event
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		for e := range r.Store.WatchEvents(ectx, rev) {
			events = append(events, e)
		}
	}()
	stopEvents := func() { cancelEvents(); <-eventsDone }
	loads := map[string]*drill.Load{}
	lctx, cancelLoads := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stopLoads := func() { cancelLoads(); wg.Wait() }
	// Whatever way Run returns, the loads and the watch end first.
	var once sync.Once
	stop := func() { once.Do(func() { stopLoads(); stopEvents() }) }
	defer stop()
	var rl *readLoad
	if !rc.NoReads && r.Cfg.Proxy.Enabled && r.Cfg.Proxy.ReaderAddr != "" {
		rl = &readLoad{run: name, names: drill.MemberNames(r.Cfg)}
		if rl.writerDSN, err = r.ProxyDSN(false); err != nil {
			return nil, err
		}
		if rl.readDSN, err = r.ProxyDSN(true); err != nil {
			return nil, err
		}
		if err := rl.prepare(ctx); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); rl.loop(lctx) }()
	}
	for _, p := range rc.Paths {
		w, err := r.NewWriter(p)
		if err != nil {
			return nil, err
		}
		l := &drill.Load{Drill: name + "-" + p, Writer: w, Rate: rc.Rate, Concurrency: max(8, int(rc.Rate/20)), Timeout: 30 * time.Second}
		loads[p] = l
		wg.Add(1)
		go func() { defer wg.Done(); defer w.Close(); l.Run(lctx) }()
	}
	start := time.Now()
	progress("%d faults (seed %d) over about %s; writes on %v at %.0f/s each", len(steps), rc.Plan.Seed, steps[len(steps)-1].At.Round(time.Second), rc.Paths, rc.Rate)

	inj := &injector{r: r, lease: lease, drill: name}
	defer inj.healAll()
	var applied []AppliedFault
	for _, s := range steps {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(start.Add(s.At))):
		}
		a := AppliedFault{Step: s, Start: time.Now(), RecoveryMS: -1}
		a.Target, err = inj.inject(ctx, s)
		if err != nil {
			a.Error = err.Error()
			progress("fault %d/%d +%s: %s: %v", s.N, len(steps), s.At.Round(100*time.Millisecond), s.Fault, err)
		} else if s.Hold > 0 {
			progress("fault %d/%d +%s: %s %s, for %s", s.N, len(steps), s.At.Round(100*time.Millisecond), s.Fault, a.Target, s.Hold.Round(100*time.Millisecond))
		} else {
			progress("fault %d/%d +%s: %s %s", s.N, len(steps), s.At.Round(100*time.Millisecond), s.Fault, a.Target)
		}
		applied = append(applied, a)
	}
	inj.waitHeals()
	lastHeal := time.Now()
	progress("every fault healed; waiting for the cluster's health (up to %s)", rc.Settle)
	var restored time.Duration
	if err := r.WaitHealthy(ctx, rc.Settle); err != nil {
		restored = -1
		progress("%v", err)
	} else {
		restored = time.Since(lastHeal)
	}
	// A last stretch of writes on the healed cluster, then stop.
	select {
	case <-ctx.Done():
	case <-time.After(3 * time.Second):
	}
	stopLoads()
	end := time.Now()
	if slices.Contains(rc.Paths, "buffer") {
		progress("waiting for the write buffer to drain")
		if err := r.WaitDrained(ctx, 5*time.Minute, end); err != nil {
			return nil, err
		}
	}
	stop()
	h := &History{Seed: rc.Plan.Seed, Name: name, Paths: rc.Paths, Ops: map[string][]Op{}, First: first.Name, Start: start,
		Events: events, Applied: applied, Restored: restored}
	if rl != nil {
		h.SeqWrites, h.Reads, h.ReadErrors, h.Sessions = rl.writes, rl.reads, rl.errors, rl.sessions
		h.ReadBound = ReadBound(r.Cfg)
	}
	// The SQL paths name the member that answered by its port: the terms
	// name members.
	names := drill.MemberNames(r.Cfg)
	for _, p := range rc.Paths {
		h.Ops[p] = opsOf(p, loads[p].Records(), names)
	}
	return h, nil
}

// Judge reads, on the primary, the rows of the run's writes and checks
// the history against them.
func Judge(ctx context.Context, r *drill.Runner, h *History) (Report, error) {
	stored, err := storedRows(ctx, r, h.Name, h.Paths)
	if err != nil {
		return Report{}, err
	}
	terms := Terms(h.First, h.Start, h.Events)
	rep := Report{Seed: h.Seed, Paths: map[string]PathResult{}, HealthRestoredMS: h.Restored.Milliseconds()}
	var all, synchronous []Op
	for _, p := range h.Paths {
		ops := h.Ops[p]
		all = append(all, ops...)
		if p != "buffer" {
			synchronous = append(synchronous, ops...)
		}
		res := Check(ops, stored[p], terms)
		rep.Paths[p] = PathResult{Writes: res.Ops, OK: res.OK, Errors: res.Errors, Unknown: res.Unknown, UnknownApplied: res.UnknownApplied,
			Lost: res.LostN, Duplicates: res.DuplicateN, ErrorApplied: res.ErrorAppliedN, TwoWriters: res.TwoWritersN}
		rep.Violations = append(rep.Violations, res.Violations...)
	}
	if h.ReadBound > 0 {
		stale := CheckReads(h.Reads, h.SeqWrites, h.ReadBound)
		rep.Reads = &ReadResult{SeqWrites: len(h.SeqWrites), Reads: len(h.Reads), Errors: h.ReadErrors, Sessions: h.Sessions,
			Stale: len(stale), BoundMS: h.ReadBound.Milliseconds()}
		rep.Violations = append(rep.Violations, stale...)
	}
	sort.SliceStable(rep.Violations, func(i, j int) bool { return rep.Violations[i].At.Before(rep.Violations[j].At) })
	// The buffer acknowledges while the database is down: recovery is
	// judged on the paths that write synchronously, when there are any.
	if len(synchronous) == 0 {
		synchronous = all
	}
	rep.Faults = recoveries(append([]AppliedFault(nil), h.Applied...), synchronous)
	rep.Passed = len(rep.Violations) == 0 && h.Restored >= 0
	if len(rep.Violations) > 0 {
		rep.History = Slice(all, marks(h.Applied, h.Events), rep.Violations[0].At, 3*time.Second)
	}
	return rep, nil
}

// ReadBound is how far behind a read on the reader endpoint may be: the
// proxy serves reads from replicas less than proxy.reader_max_lag behind
// as of a report at most three agent.loop_interval old (see the proxy's
// router), plus a second for the read itself.
func ReadBound(cfg config.Config) time.Duration {
	return cfg.Proxy.ReaderMaxLag.D() + 3*cfg.Agent.LoopInterval.D() + time.Second
}

// Terms are the primaries' terms: first from start, then each promotion.
func Terms(first string, start time.Time, events []cluster.Event) []Term {
	var out []Term
	if first != "" {
		out = append(out, Term{Member: first, From: start})
	}
	for _, e := range events {
		if (e.Kind == cluster.EventPromoted || e.Kind == cluster.EventRegionPromoted) && e.Member != "" {
			out = append(out, Term{Member: e.Member, From: e.Time})
		}
	}
	return out
}

// opsOf makes ops of a path's records; names maps what a record says
// answered ("port 5432") to the member's name.
func opsOf(path string, recs []drill.Record, names map[string]string) []Op {
	out := make([]Op, len(recs))
	for i, r := range recs {
		member := r.Member
		if n, ok := names[member]; ok {
			member = n
		}
		out[i] = Op{Path: path, ID: r.ID, Invoked: r.Sent, Completed: r.Done, Outcome: r.Outcome, Member: member}
	}
	return out
}

// recoveries fills each fault's recovery: the first write sent after it and
// acknowledged, on any path.
func recoveries(applied []AppliedFault, ops []Op) []AppliedFault {
	oks := make([]Op, 0, len(ops))
	for _, o := range ops {
		if o.Outcome == drill.OK {
			oks = append(oks, o)
		}
	}
	sort.Slice(oks, func(i, j int) bool { return oks[i].Invoked.Before(oks[j].Invoked) })
	for i := range applied {
		a := &applied[i]
		k := sort.Search(len(oks), func(j int) bool { return !oks[j].Invoked.Before(a.Start) })
		best := time.Duration(-1)
		for _, o := range oks[k:] {
			if d := o.Completed.Sub(a.Start); best < 0 || d < best {
				best = d
			}
			if o.Invoked.Sub(a.Start) > best && best >= 0 {
				break // later writes cannot answer sooner than best
			}
		}
		a.RecoveryMS = -1
		if best >= 0 {
			a.RecoveryMS = best.Milliseconds()
		}
	}
	return applied
}

func marks(applied []AppliedFault, events []cluster.Event) []Mark {
	var out []Mark
	for _, a := range applied {
		out = append(out, Mark{At: a.Start, What: fmt.Sprintf("fault %d: %s %s", a.N, a.Fault, a.Target)})
		if a.Hold > 0 {
			out = append(out, Mark{At: a.Start.Add(a.Hold), What: fmt.Sprintf("heal %d: %s %s", a.N, a.Fault, a.Target)})
		}
	}
	for _, e := range events {
		out = append(out, Mark{At: e.Time, What: e.Kind + " " + e.Member + ": " + e.Message})
	}
	return out
}

// storedRows reads, on the primary, the rows of each path's drill.
func storedRows(ctx context.Context, r *drill.Runner, name string, paths []string) (map[string]map[string]int, error) {
	st, err := admin.Status(ctx, r.Store, r.Cfg)
	if err != nil {
		return nil, err
	}
	p, ok := st.PrimaryMember()
	if !ok {
		return nil, errors.New("no primary to reconcile against")
	}
	cred, _, err := r.Cfg.LoadSecrets()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, drill.MemberDSN(p, cred, r.Cfg.Postgres.AppDatabase))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	out := map[string]map[string]int{}
	for _, path := range paths {
		if out[path], err = drill.Stored(ctx, conn, name+"-"+path); err != nil {
			return nil, err
		}
	}
	return out, nil
}
