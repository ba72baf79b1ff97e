package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SlotName turns a member name into a valid replication slot name: lower
// case, characters other than [a-z0-9_] replaced by '_', at most 63 bytes.
// Distinct member names can collide ("a-b", "a_b"); the cluster
// configuration should refuse such pairs.
func SlotName(member string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(member) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 63 {
			break
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// Slot is a physical replication slot.
type Slot struct {
	Name       string
	Active     bool
	RestartLSN LSN
}

// Slots lists the physical replication slots.
func (i *Instance) Slots(ctx context.Context) ([]Slot, error) {
	conn, err := i.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	defer conn.Close(context.Background())
	return listSlots(ctx, conn)
}

func listSlots(ctx context.Context, conn *pgx.Conn) ([]Slot, error) {
	rows, err := conn.Query(ctx, `SELECT slot_name::text, active, coalesce(restart_lsn::text, '')
		FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name`)
	if err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	defer rows.Close()
	var out []Slot
	for rows.Next() {
		var s Slot
		var lsn string
		if err := rows.Scan(&s.Name, &s.Active, &lsn); err != nil {
			return nil, fmt.Errorf("list slots: %w", err)
		}
		if s.RestartLSN, err = parseLSNOrZero(lsn); err != nil {
			return nil, fmt.Errorf("list slots: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	return out, nil
}

// EnsureSlots creates the physical replication slots that do not exist yet,
// reserving WAL immediately so that WAL a standby will need is kept from the
// moment its slot exists. Names must already be valid (see SlotName).
//
// Verified against PostgreSQL 15 (TestCluster/slots_on_standby): physical
// slots can be created on a standby too. They survive promotion, so the
// agent pre-creates its peers' slots on replicas and a newly promoted member
// already has them. On a standby such a slot holds WAL back (restartpoints
// keep it) until something consumes it; AdvanceSlots moves it forward.
func (i *Instance) EnsureSlots(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	conn, err := i.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ensure slots: %w", err)
	}
	defer conn.Close(context.Background())
	have, err := listSlots(ctx, conn)
	if err != nil {
		return fmt.Errorf("ensure slots: %w", err)
	}
	for _, name := range names {
		if slices.ContainsFunc(have, func(s Slot) bool { return s.Name == name }) {
			continue
		}
		_, err := conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", name)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // duplicate_object: created concurrently
			continue
		}
		if err != nil {
			return fmt.Errorf("create slot %s: %w", name, err)
		}
		i.log.Info("created replication slot", "slot", name)
	}
	return nil
}

// DropSlotsExcept drops the inactive physical slots whose names are not in
// keep, so that slots of departed members stop holding WAL. An active slot
// is never dropped (its standby still streams); one that becomes active
// while being dropped is skipped.
func (i *Instance) DropSlotsExcept(ctx context.Context, keep []string) error {
	conn, err := i.Conn(ctx)
	if err != nil {
		return fmt.Errorf("drop slots: %w", err)
	}
	defer conn.Close(context.Background())
	have, err := listSlots(ctx, conn)
	if err != nil {
		return fmt.Errorf("drop slots: %w", err)
	}
	for _, s := range have {
		if s.Active || slices.Contains(keep, s.Name) {
			continue
		}
		_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.Name)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "55006" || pgErr.Code == "42704") { // object_in_use, undefined_object
			i.log.Info("replication slot became active or vanished, not dropped", "slot", s.Name, "err", pgErr.Message)
			continue
		}
		if err != nil {
			return fmt.Errorf("drop slot %s: %w", s.Name, err)
		}
		i.log.Info("dropped replication slot", "slot", s.Name)
	}
	return nil
}

// AdvanceSlots moves inactive physical slots forward to the given positions
// (typically, on a standby, the positions the primary reports for the same
// slots), so that slots pre-created on a standby do not hold WAL forever.
// The server caps the target at what it has replayed (standby) or flushed
// (primary). Slots that are missing, active or already at or past the target
// are left alone: a slot cannot move backwards.
func (i *Instance) AdvanceSlots(ctx context.Context, to map[string]LSN) error {
	if len(to) == 0 {
		return nil
	}
	conn, err := i.Conn(ctx)
	if err != nil {
		return fmt.Errorf("advance slots: %w", err)
	}
	defer conn.Close(context.Background())
	have, err := listSlots(ctx, conn)
	if err != nil {
		return fmt.Errorf("advance slots: %w", err)
	}
	for _, s := range have {
		target, ok := to[s.Name]
		if !ok || s.Active || target <= s.RestartLSN || s.RestartLSN == 0 {
			continue
		}
		if _, err := conn.Exec(ctx, "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)", s.Name, target.String()); err != nil {
			return fmt.Errorf("advance slot %s to %s: %w", s.Name, target, err)
		}
	}
	return nil
}
