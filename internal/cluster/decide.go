package cluster

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Local is what an agent observes of its own member.
type Local struct {
	Name   string
	Region string
	// LeaseID is the agent's current etcd lease.
	LeaseID int64
	// LeaseValid is false once the lease has gone unrenewed for so long that
	// it could expire within the demote margin.
	LeaseValid bool
	PGRunning  bool
	InRecovery bool
	Timeline   int
	LSN        LSN
	// HeadOfHistory is true when the local member was the primary of the
	// topology's current generation: nobody has been promoted since, so
	// its WAL holds every commit acknowledged on the current timeline. It
	// stands in an election only as a last resort (see lastPrimaryResort).
	HeadOfHistory bool
	// PromoteFailures counts this member's promotions that failed in a row
	// (PostgreSQL died or refused while finishing recovery), reset by one
	// that succeeds and by following a leader.
	PromoteFailures int
}

// MaxPromoteFailures is how many promotions in a row may fail before the
// member gives the leader key up: a member whose recovery cannot finish
// (PostgreSQL panics at its end, say) holds the key forever otherwise, and
// the cluster has no primary while nobody else may take over.
const MaxPromoteFailures = 3

// PromoteFailed reports whether failures promotions in a row failed: the
// member gives the key up and stands in no election until it has followed a
// leader again.
func PromoteFailed(failures int) bool { return failures >= MaxPromoteFailures }

// View is everything Decide looks at. Members holds only live members (their
// keys exist, so their agents are alive); the local member's published entry
// may be stale, Local is authoritative for it.
type View struct {
	Now         time.Time
	Local       Local
	Topology    Topology
	TopologyRev int64
	// Leader is the holder of the local region's leader key, nil when absent.
	Leader *Leader
	// PrimaryLeader is the holder of the primary region's leader key when
	// the local member is in another region (a standby region), nil when
	// absent or when the local region is the primary region.
	PrimaryLeader *Leader
	Members       map[string]Member
	// LostRev identifies the leaderless period the agent is in: the highest
	// revision known at which there was no leader (deletion of the key, the
	// snapshot at start-up, or a peer's report). Reports with a lower
	// LeaderLostRev were measured before the period began and are stale.
	LostRev int64
	// LostAt is when the agent entered the leaderless period.
	LostAt time.Time
	// ReportTimeout bounds how long candidates wait for fresh reports.
	ReportTimeout time.Duration
	// MaxLag is the most a switchover target may lag behind, in bytes.
	MaxLag int64
}

// Action is what the agent should do next.
type Action int

const (
	// ActNone: nothing to change (healthy, or waiting; Reason says which).
	ActNone Action = iota
	// ActDemote: stop accepting writes at once (stop PostgreSQL).
	ActDemote
	// ActRelease: give up the leader key so a replica can take over
	// (our PostgreSQL died and a replica can safely replace it).
	ActRelease
	// ActReleaseStale: the leader key names us but belongs to a previous
	// incarnation's lease; delete it (after making sure PostgreSQL is not a
	// primary) so the cluster does not wait for the lease to expire.
	ActReleaseStale
	// ActRestartPrimary: restart our crashed PostgreSQL in place while keeping
	// the key, because no replica can take over safely.
	ActRestartPrimary
	// ActFinishPromote: we hold the key but PostgreSQL is still in recovery.
	ActFinishPromote
	// ActPromote: campaign for the leader key, then promote.
	ActPromote
	// ActFollow: be a replica of Target (the leader).
	ActFollow
	// ActStartStandby: no leader; run PostgreSQL read-only so that our WAL
	// position can be reported and compared.
	ActStartStandby
	// ActHandover: planned switchover to Target: stop, then hand the key over.
	ActHandover
	// ActBlocked: automatic promotion is refused because too few members
	// answered to be sure no acknowledged commit is missing (R + W <= N).
	ActBlocked
	// ActLeadStandby: in a standby region, take the region's leader key
	// without promoting: the standby leader streams from the primary and
	// the region's other members cascade from it.
	ActLeadStandby
	// ActTakeRegion: region switchover target: make our region the primary
	// region (compare-and-swap on the topology), then promote.
	ActTakeRegion
)

var actionNames = map[Action]string{
	ActNone: "none", ActDemote: "demote", ActRelease: "release", ActReleaseStale: "release-stale",
	ActRestartPrimary: "restart-primary", ActFinishPromote: "finish-promote", ActPromote: "promote",
	ActFollow: "follow", ActStartStandby: "start-standby", ActHandover: "handover", ActBlocked: "blocked",
	ActLeadStandby: "lead-standby", ActTakeRegion: "take-region",
}

func (a Action) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Plan is Decide's answer.
type Plan struct {
	Action Action
	Target string
	Reason string
}

func (p Plan) String() string {
	if p.Target != "" {
		return fmt.Sprintf("%s %s: %s", p.Action, p.Target, p.Reason)
	}
	return fmt.Sprintf("%s: %s", p.Action, p.Reason)
}

func plan(a Action, target, format string, args ...any) Plan {
	return Plan{Action: a, Target: target, Reason: fmt.Sprintf(format, args...)}
}

// Decide returns what the local member should do. It is a pure function of
// the view; the agent carries the plan out and calls Decide again on every
// change it observes.
func Decide(v View) Plan {
	me := v.Local.Name
	if v.Topology.PrimaryRegion != "" && v.Local.Region != "" && v.Local.Region != v.Topology.PrimaryRegion {
		return decideStandbyRegion(v)
	}
	if v.Leader != nil && v.Leader.Member == me {
		return decideHolder(v)
	}
	if v.Leader != nil {
		if v.Local.PGRunning && !v.Local.InRecovery {
			return plan(ActDemote, v.Leader.Member, "running as primary while %s holds the leader key", v.Leader.Member)
		}
		return plan(ActFollow, v.Leader.Member, "%s is the leader", v.Leader.Member)
	}
	return decideLeaderless(v)
}

func decideHolder(v View) Plan {
	me := v.Local.Name
	if v.Leader.LeaseID != v.Local.LeaseID {
		if v.Local.PGRunning && !v.Local.InRecovery {
			return plan(ActDemote, "", "the leader key belongs to a previous lease of this member")
		}
		return plan(ActReleaseStale, "", "the leader key belongs to a previous lease of this member")
	}
	if !v.Local.LeaseValid {
		return plan(ActDemote, "", "leader lease could not be renewed in time")
	}
	if (!v.Local.PGRunning || v.Local.InRecovery) && PromoteFailed(v.Local.PromoteFailures) {
		return plan(ActRelease, "", "promotion failed %d times in a row: giving the leader key up so that another member, or an operator, can take over", v.Local.PromoteFailures)
	}
	if !v.Local.PGRunning {
		if v.Topology.Paused {
			return plan(ActRestartPrimary, "", "postgres is down and the cluster is paused")
		}
		if c, ok := takeoverPossible(v); ok {
			return plan(ActRelease, c, "postgres is down and %s can take over", c)
		}
		return plan(ActRestartPrimary, "", "postgres is down and no replica can take over without risking acknowledged commits")
	}
	if v.Local.InRecovery {
		return plan(ActFinishPromote, "", "holding the leader key while postgres is in recovery")
	}
	if sw := v.Topology.Switchover; sw != nil && sw.From == me && !sw.HandedOver && v.Now.Before(sw.Deadline) && sw.Region != "" && sw.Region != v.Local.Region {
		target, err := RegionSwitchoverTarget(v.Members, me, sw.To, sw.Region, v.MaxLag)
		if err != nil {
			return plan(ActNone, "", "region switchover waiting: %v", err)
		}
		return plan(ActHandover, target, "region switchover to %s requested", sw.Region)
	}
	if sw := v.Topology.Switchover; sw != nil && sw.From == me && !sw.HandedOver && v.Now.Before(sw.Deadline) {
		target, err := SwitchoverTarget(v.Topology, v.Members, me, sw.To, v.MaxLag)
		if err != nil {
			return plan(ActNone, "", "switchover waiting: %v", err)
		}
		return plan(ActHandover, target, "switchover requested")
	}
	if fo := v.Topology.Failover; fo != nil && v.Now.Before(fo.Deadline) && fo.To != "" && fo.To != me {
		target, err := SwitchoverTarget(v.Topology, v.Members, me, fo.To, v.MaxLag)
		if err != nil {
			return plan(ActNone, "", "failover waiting: %v", err)
		}
		return plan(ActHandover, target, "manual failover to %s while the primary is healthy: done as a switchover", target)
	}
	return plan(ActNone, "", "healthy primary")
}

// takeoverPossible reports whether, if the leader released the key now, a
// replica could be promoted automatically without risking acknowledged
// commits: enough of the synchronous set is alive and streaming.
func takeoverPossible(v View) (string, bool) {
	var alive []string
	for _, name := range eligible(v.Topology, v.Members, v.Local.Region) {
		m, ok := v.Members[name]
		if !ok || m.Name == v.Local.Name || m.Region != v.Local.Region {
			continue
		}
		if m.State == StateRunning && m.Role == RoleReplica {
			alive = append(alive, name)
		}
	}
	if len(alive) == 0 {
		return "", false
	}
	if v.Topology.SyncMode != SyncOff {
		n := len(v.Topology.SyncSet)
		if n == 0 || len(alive)+syncCount(v.Topology) <= n {
			return "", false
		}
	}
	sort.Strings(alive)
	return alive[0], true
}

func syncCount(t Topology) int {
	if t.SyncCount < 1 {
		return 1
	}
	return t.SyncCount
}

// eligible lists the members that may be promoted automatically: the
// synchronous set. The last primary is deliberately not eligible even though
// its WAL holds every commit it acknowledged: a primary that lost its key never
// comes back as primary by itself (invariant 5); it rejoins as a replica.
// With synchronous replication off, every member of the region is eligible.
func eligible(t Topology, members map[string]Member, region string) []string {
	set := map[string]bool{}
	if t.SyncMode == SyncOff {
		for name, m := range members {
			if m.Region == region || region == "" {
				set[name] = true
			}
		}
	}
	for _, n := range t.SyncSet {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// candidate is a member's WAL position as reported for a leaderless period.
type candidate struct {
	name     string
	timeline int
	lsn      LSN
	// promoteFailed: its promotion failed MaxPromoteFailures times in a
	// row; it reports its WAL but may not be promoted automatically.
	promoteFailed bool
}

// better orders candidates by WAL position. Timelines are deliberately not
// compared: every eligible member replicated from the same primary, so they
// share one history and the LSN alone says who has more; and a standby whose
// WAL receiver has stopped can only report the timeline of its last
// restartpoint, which may be stale.
func better(a, b candidate, lastPrimary string) bool {
	if a.lsn != b.lsn {
		return a.lsn > b.lsn
	}
	// Equal WAL: keep the last primary to avoid a needless timeline switch,
	// then the name decides so every member computes the same winner.
	if (a.name == lastPrimary) != (b.name == lastPrimary) {
		return a.name == lastPrimary
	}
	return a.name < b.name
}

func decideLeaderless(v View) Plan {
	me := v.Local.Name
	if !v.Local.PGRunning {
		return plan(ActStartStandby, "", "no leader: start postgres read-only to report its WAL position")
	}
	if !v.Local.InRecovery {
		return plan(ActDemote, "", "running as primary without holding the leader key")
	}
	if v.Topology.Paused {
		return plan(ActNone, "", "no leader and the cluster is paused: no automatic promotion")
	}

	answered, pending := v.reports()

	if sw := v.Topology.Switchover; sw != nil && sw.HandedOver && v.Now.Before(sw.Deadline) {
		if sw.To != me {
			return plan(ActNone, sw.To, "switchover to %s in progress", sw.To)
		}
		if v.Local.LSN < sw.MinLSN {
			return plan(ActNone, "", "switchover target catching up: at %s, need %s", v.Local.LSN, sw.MinLSN)
		}
		return plan(ActPromote, "", "switchover target has received everything up to %s", sw.MinLSN)
	}

	if fo := v.Topology.Failover; fo != nil && v.Now.Before(fo.Deadline) && fo.AllowDataLoss {
		var best *candidate
		for _, c := range answered {
			if fo.To != "" && c.name != fo.To || fo.To == "" && c.promoteFailed {
				continue
			}
			if best == nil || better(c, *best, v.Topology.Primary) {
				c := c
				best = &c
			}
		}
		if best == nil {
			return plan(ActNone, fo.To, "manual failover: target has not reported")
		}
		if best.name == me {
			return plan(ActPromote, "", "manual failover with --allow-data-loss")
		}
		return plan(ActNone, best.name, "manual failover to %s", best.name)
	}

	elig := eligible(v.Topology, v.Members, v.Local.Region)
	if !contains(elig, me) {
		if v.Local.HeadOfHistory {
			return lastPrimaryResort(v, elig)
		}
		return plan(ActNone, "", "not eligible for promotion (not in the synchronous set %v)", v.Topology.SyncSet)
	}
	var waitFor []string
	for _, n := range pending {
		if contains(elig, n) {
			waitFor = append(waitFor, n)
		}
	}
	if len(waitFor) > 0 && v.Now.Sub(v.LostAt) < v.ReportTimeout {
		return plan(ActNone, "", "waiting for WAL positions from %s", strings.Join(waitFor, ", "))
	}

	var best *candidate
	answeredSet := map[string]bool{}
	for _, c := range answered {
		if !contains(elig, c.name) {
			continue
		}
		answeredSet[c.name] = true
		if best == nil || better(c, *best, v.Topology.Primary) {
			c := c
			best = &c
		}
	}
	if ok, why := quorumAnswered(v.Topology, answeredSet); !ok {
		return plan(ActBlocked, "", "%s", why)
	}
	if best == nil {
		return plan(ActNone, "", "no candidate has reported")
	}
	if best.promoteFailed {
		return plan(ActBlocked, best.name, "%s has the most WAL (timeline %d, %s) but its promotion failed %d times in a row: no other member can be promoted without risking acknowledged commits; repair it, or use `holdfast failover --to MEMBER --allow-data-loss`", best.name, best.timeline, best.lsn, MaxPromoteFailures)
	}
	if fo := v.Topology.Failover; fo != nil && v.Now.Before(fo.Deadline) && fo.To != "" && fo.To != best.name {
		return plan(ActBlocked, fo.To, "manual failover to %s refused: %s has more WAL (%s); use --allow-data-loss to force", fo.To, best.name, best.lsn)
	}
	if best.name == me {
		return plan(ActPromote, "", "most WAL among the eligible members that answered (timeline %d, %s)", best.timeline, best.lsn)
	}
	return plan(ActNone, best.name, "%s has the most WAL (timeline %d, %s)", best.name, best.timeline, best.lsn)
}

// lastPrimaryResortAfter is how long into a leaderless period the last
// primary waits before standing in the election itself: the replicas'
// election (which waits up to the report timeout for their reports) goes
// first.
const lastPrimaryResortAfter = 3

// lastPrimaryResort decides for the last primary, running read-only with
// its WAL intact, nobody promoted since (Local.HeadOfHistory). A replica
// promoted in its place is the fast path (the last primary has to restart
// before it can report); but when none can be (too few of the synchronous
// set answered, or every one of them waits for a repair that needs a
// primary, which happens when faults come back to back), the last primary
// holds every acknowledged commit: it takes the key in a new generation
// (campaign), as any candidate must, rather than leave the cluster without
// a primary for good. If a replica wins the race, the last primary rewinds
// as before.
func lastPrimaryResort(v View, elig []string) Plan {
	if wait := time.Duration(lastPrimaryResortAfter) * v.ReportTimeout; v.Now.Sub(v.LostAt) < wait {
		return plan(ActNone, "", "last primary (generation %d): leaving the election to the synchronous set for %s", v.Topology.Generation, wait)
	}
	answered, _ := v.reports()
	answeredSet := map[string]bool{}
	var best *candidate
	for _, c := range answered {
		if c.name == v.Local.Name || !contains(elig, c.name) {
			continue
		}
		answeredSet[c.name] = true
		if best == nil || better(c, *best, v.Topology.Primary) {
			c := c
			best = &c
		}
	}
	ok, why := quorumAnswered(v.Topology, answeredSet)
	if ok && best != nil {
		return plan(ActNone, best.name, "last primary (generation %d): %s can be promoted", v.Topology.Generation, best.name)
	}
	if PromoteFailed(v.Local.PromoteFailures) {
		return plan(ActBlocked, "", "last primary (generation %d), but its promotion failed %d times in a row, and no replica can be promoted: repair it, or use `holdfast failover --to MEMBER --allow-data-loss`", v.Topology.Generation, v.Local.PromoteFailures)
	}
	if why == "" {
		why = "no member of the synchronous set has reported"
	}
	return plan(ActPromote, "", "last primary (generation %d), its WAL holds every acknowledged commit (timeline %d, %s), and no replica can be promoted: %s",
		v.Topology.Generation, v.Local.Timeline, v.Local.LSN, why)
}

// decideStandbyRegion decides for a member of a region that is not the
// primary region. Such a member never accepts writes: a primary left
// running there (the old primary region, after a region failover) demotes.
// The region elects a standby leader, the member with the most WAL, which
// streams from the primary; the others cascade from it. Only a change of
// the topology's primary region (region failover or switchover) turns the
// standby leader into the primary: it then decides as a holder in the
// primary region and finishes promotion.
func decideStandbyRegion(v View) Plan {
	me, region := v.Local.Name, v.Local.Region
	if v.Local.PGRunning && !v.Local.InRecovery {
		return plan(ActDemote, "", "region %s is a standby region (the primary region is %s): no member of it accepts writes", region, v.Topology.PrimaryRegion)
	}
	if v.Leader != nil && v.Leader.Member == me {
		if v.Leader.LeaseID != v.Local.LeaseID {
			return plan(ActReleaseStale, "", "the standby leader key belongs to a previous lease of this member")
		}
		if sw := v.Topology.Switchover; sw != nil && sw.Region == region && sw.To == me && sw.HandedOver && v.Now.Before(sw.Deadline) && v.Local.PGRunning {
			if v.Local.LSN < sw.MinLSN {
				return plan(ActNone, "", "region switchover target catching up: at %s, need %s", v.Local.LSN, sw.MinLSN)
			}
			return plan(ActTakeRegion, "", "region switchover: received everything up to %s", sw.MinLSN)
		}
		if !v.Local.PGRunning {
			return plan(ActStartStandby, "", "standby leader of %s: postgres is down, restart it read-only", region)
		}
		if v.PrimaryLeader == nil {
			return plan(ActNone, "", "standby leader of %s: the primary region %s has no leader; keep what was replayed", region, v.Topology.PrimaryRegion)
		}
		return plan(ActFollow, v.PrimaryLeader.Member, "standby leader of %s streams from the primary %s", region, v.PrimaryLeader.Member)
	}
	if v.Leader != nil {
		return plan(ActFollow, v.Leader.Member, "cascades from %s, the standby leader of %s", v.Leader.Member, region)
	}
	// No standby leader: stream from the primary meanwhile (a new member
	// copies its data from there), and elect the member with the most WAL.
	if !v.Local.PGRunning {
		if v.PrimaryLeader != nil {
			return plan(ActFollow, v.PrimaryLeader.Member, "region %s has no standby leader: stream from the primary %s meanwhile", region, v.PrimaryLeader.Member)
		}
		return plan(ActStartStandby, "", "region %s has no standby leader and the primary region none either", region)
	}
	answered, pending := v.reports()
	if len(pending) > 0 && v.Now.Sub(v.LostAt) < v.ReportTimeout {
		return plan(ActNone, "", "electing the standby leader of %s: waiting for WAL positions from %s", region, strings.Join(pending, ", "))
	}
	var best *candidate
	for _, c := range answered {
		// A member whose promotion failed leads only if nobody else can:
		// the standby leader is what a region failover promotes.
		if best == nil || best.promoteFailed && !c.promoteFailed || best.promoteFailed == c.promoteFailed && better(c, *best, "") {
			c := c
			best = &c
		}
	}
	if best.name == me {
		return plan(ActLeadStandby, "", "most WAL in standby region %s (%s)", region, best.lsn)
	}
	if v.PrimaryLeader != nil {
		return plan(ActFollow, v.PrimaryLeader.Member, "%s has the most WAL in %s and should lead it; stream from the primary meanwhile", best.name, region)
	}
	return plan(ActNone, best.name, "%s has the most WAL in %s and should lead it", best.name, region)
}

// quorumAnswered says whether the members that answered are enough to be
// sure that one of them holds every acknowledged commit.
func quorumAnswered(t Topology, answered map[string]bool) (bool, string) {
	if t.SyncMode == SyncOff {
		return true, ""
	}
	n := len(t.SyncSet)
	if n == 0 {
		return false, "the synchronous set is empty: no replica is known to hold every acknowledged commit"
	}
	r := 0
	for _, name := range t.SyncSet {
		if answered[name] {
			r++
		}
	}
	w := syncCount(t)
	if r+w <= n {
		return false, fmt.Sprintf("only %d of the %d synchronous members %v answered and commits need %d: R + W <= N, an acknowledged commit may be missing; use `holdfast failover --allow-data-loss` to force", r, n, t.SyncSet, w)
	}
	return true, ""
}

// reports splits the region's live members into those whose WAL position was
// measured during this leaderless period (with the local member's own
// position) and those not yet heard from.
func (v View) reports() (answered []candidate, pending []string) {
	answered = append(answered, candidate{v.Local.Name, v.Local.Timeline, v.Local.LSN, PromoteFailed(v.Local.PromoteFailures)})
	names := make([]string, 0, len(v.Members))
	for n := range v.Members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := v.Members[n]
		if n == v.Local.Name || m.Region != v.Local.Region {
			continue
		}
		if m.LeaderLostRev < v.LostRev || m.LeaderLostRev == 0 {
			pending = append(pending, n)
			continue
		}
		if m.State != StateRunning || m.Role != RoleReplica {
			// Alive but with no WAL position to offer (postgres down or
			// rejoining): it has answered that it cannot be a candidate.
			continue
		}
		answered = append(answered, candidate{n, m.Timeline, m.LSN, m.PromoteFailed})
	}
	return answered, pending
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
