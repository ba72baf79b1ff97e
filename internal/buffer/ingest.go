package buffer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// KindIngest is the lab's write: one row per request id in table ingest.
const KindIngest = "ingest"

// IngestDDL creates the ingest table (in the application database).
const IngestDDL = `CREATE TABLE IF NOT EXISTS ingest (
	guid         uuid PRIMARY KEY,
	requested_at timestamptz NOT NULL,
	committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
)`

// IngestPayload is the payload of an ingest write.
type IngestPayload struct {
	GUID        string     `json:"guid"`
	RequestedAt *time.Time `json:"requested_at,omitempty"` // default: when the buffer accepted it
}

func parseIngest(payload []byte) (IngestPayload, error) {
	var p IngestPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return p, fmt.Errorf("%w: payload: %v", ErrRejected, err)
	}
	if _, err := uuid.Parse(p.GUID); err != nil {
		return p, fmt.Errorf("%w: payload.guid %q is not a UUID", ErrRejected, p.GUID)
	}
	return p, nil
}

// ingestHandler inserts ingest rows, many per statement.
type ingestHandler struct{}

func (ingestHandler) Validate(payload []byte) error {
	_, err := parseIngest(payload)
	return err
}

func (ingestHandler) DDL() []string { return []string{IngestDDL} }

func ingestRow(w Write) (string, time.Time, error) {
	p, err := parseIngest(w.Payload)
	if err != nil {
		return "", time.Time{}, err
	}
	at := w.AcceptedAt
	if p.RequestedAt != nil {
		at = *p.RequestedAt
	}
	return p.GUID, at, nil
}

func (ingestHandler) Apply(ctx context.Context, tx pgx.Tx, w Write) error {
	g, at, err := ingestRow(w)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO ingest (guid, requested_at) VALUES ($1, $2)", g, at)
	return err
}

func (ingestHandler) ApplyBatch(ctx context.Context, tx pgx.Tx, ws []Write) error {
	guids := make([]string, len(ws))
	ats := make([]time.Time, len(ws))
	for i, w := range ws {
		var err error
		if guids[i], ats[i], err = ingestRow(w); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, "INSERT INTO ingest (guid, requested_at) SELECT * FROM unnest($1::uuid[], $2::timestamptz[])", guids, ats)
	return err
}

// IngestHandlers are the handlers of GET /ingest's writes (KindIngest).
func IngestHandlers() Handlers { return Handlers{KindIngest: ingestHandler{}} }
