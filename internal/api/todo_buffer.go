package api

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/buffer"
)

// TodoHandlers are the handlers of the ToDo API's buffered writes: they
// are applied by the buffer's committer, in its transaction, where the
// write's key is recorded with it, so each applies once. A write that can
// never apply (its todo is gone, or its version changed) fails
// permanently and ends in the dead-letter queue.
func TodoHandlers() buffer.Handlers {
	parse := func(w buffer.Write) (todoWrite, error) {
		var tw todoWrite
		if err := json.Unmarshal(w.Payload, &tw); err != nil {
			return tw, fmt.Errorf("%w: payload: %v", buffer.ErrRejected, err)
		}
		return tw, nil
	}
	validate := func(payload []byte) error {
		var tw todoWrite
		return json.Unmarshal(payload, &tw)
	}
	hs := buffer.Handlers{}
	hs[kindTodoCreate] = buffer.HandlerFuncs{ValidateFunc: validate, Schema: todosDDL,
		ApplyFunc: func(ctx context.Context, tx pgx.Tx, w buffer.Write) error {
			tw, err := parse(w)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "INSERT INTO todos (task, status, created_at, updated_at) VALUES ($1, $2, $3, $3)", tw.Task, tw.Status, w.AcceptedAt)
			return err
		}}
	hs[kindTodoUpdate] = buffer.HandlerFuncs{ValidateFunc: validate,
		ApplyFunc: func(ctx context.Context, tx pgx.Tx, w buffer.Write) error {
			tw, err := parse(w)
			if err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE todos SET task = $2, status = $3, updated_at = clock_timestamp(), version = version + 1
				WHERE id = $1 AND ($4 = 0 OR version = $4)`, tw.ID, tw.Task, tw.Status, tw.IfVersion)
			if err == nil && tag.RowsAffected() == 0 {
				err = fmt.Errorf("%w: todo %d does not exist or is no longer at version %d", buffer.ErrRejected, tw.ID, tw.IfVersion)
			}
			return err
		}}
	hs[kindTodoDelete] = buffer.HandlerFuncs{ValidateFunc: validate,
		ApplyFunc: func(ctx context.Context, tx pgx.Tx, w buffer.Write) error {
			tw, err := parse(w)
			if err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, "DELETE FROM todos WHERE id = $1 AND ($2 = 0 OR version = $2)", tw.ID, tw.IfVersion)
			if err == nil && tag.RowsAffected() == 0 && tw.IfVersion > 0 {
				err = fmt.Errorf("%w: todo %d is no longer at version %d", buffer.ErrRejected, tw.ID, tw.IfVersion)
			}
			return err // deleting a todo already gone is done
		}}
	return hs
}
