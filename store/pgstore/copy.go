package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/store"
)

// CopySource is the SQLite store being moved: its reporting database, read
// only, and its tokens, opened with its key.
type CopySource struct {
	Reports *sql.DB
	Token   func(ctx context.Context, connID int64) (store.StoredToken, error)
}

// CopyProgress is called after every batch with the table, the rows of it
// handled so far and its total.
type CopyProgress func(table string, done, total int64)

// CopyCount is one table's row count on both sides after a copy.
type CopyCount struct {
	Table          string
	Source, Target int64
}

// copyTable says how one table is copied: its columns (json ones cast),
// in an order that keeps parents before children.
type copyTable struct {
	name    string
	cols    []string
	json    map[string]bool
	orderBy string
	// from is what the rows are read from in SQLite, when not the table of
	// the same name: since SQLite schema 5 an older snapshot keeps only the
	// investment rows that changed and raw answers are kept in pieces, so
	// they are read whole from the views, which have the tables' columns.
	from string
}

// source is where t's rows are read in SQLite.
func (t copyTable) source() string {
	if t.from != "" {
		return t.from
	}
	return t.name
}

var copyTables = []copyTable{
	{name: "connection", cols: []string{"id", "name", "provider", "base_url", "state", "access_expires_at",
		"refresh_expires_at", "last_success_at", "last_error", "created_at", "updated_at", "state_since"}, orderBy: "id"},
	{name: "everreal_snapshot", cols: []string{"connection_id", "snapshot_at", "fetched_at", "user_id", "email",
		"first_name", "last_name", "is_active", "is_tenant", "terms_accepted", "language", "company_id",
		"company_name", "partner_id", "partner_name", "partner_subdomain", "scopes", "raw"},
		json: map[string]bool{"scopes": true, "raw": true}, orderBy: "connection_id, snapshot_at"},
	{name: "everreal_company", cols: []string{"connection_id", "snapshot_at", "position", "company_id", "name", "is_default"},
		orderBy: "connection_id, snapshot_at, position"},
	{name: "estateguru_snapshot", cols: []string{"connection_id", "snapshot_at", "fetched_at", "currency", "cash_cents",
		"investments", "investment_amount_cents", "market_value_cents", "principal_left_cents", "profit_cents",
		"realized_income_cents", "raw"}, json: map[string]bool{"raw": true}, orderBy: "connection_id, snapshot_at",
		from: "estateguru_portfolios"},
	{name: "estateguru_investment", cols: []string{"connection_id", "snapshot_at", "position", "loan_id", "name", "quantity",
		"investment_amount_cents", "market_value_cents", "principal_left_cents", "profit_cents",
		"realized_income_cents", "change_cents", "resource_path"}, orderBy: "connection_id, snapshot_at, position",
		from: "estateguru_investments"},
	{name: "sync_run", cols: []string{"id", "trigger", "started_at", "finished_at", "status", "connections_ok",
		"connections_failed", "pid", "connections_skipped", "connections_warned"}, orderBy: "id"},
	{name: "sync_result", cols: []string{"run_id", "connection_id", "status", "error", "started_at", "finished_at"},
		orderBy: "run_id, connection_id"},
	// What was announced, so the move repeats no notification.
	{name: "notify_state", cols: []string{"connection_id", "condition", "refresh_warned_for", "updated_at"},
		orderBy: "connection_id"},
}

// copyBatch rows go in one transaction: a copy interrupted loses at most
// one batch of work, and no transaction grows with the history.
const copyBatch = 2000

// Copy copies a SQLite store into this database: connections (same ids),
// their tokens (sealed with this store's key), snapshots, and run history.
// Each batch is one transaction and every row is inserted only if absent,
// so an interrupted copy run again carries on where it stopped and a
// finished one run again changes nothing; a token already in the vault
// (an instance may have rotated it since) is never overwritten. The target
// must be empty or hold an earlier copy of the same store: a connection id
// or name that differs from the source's is refused before anything is
// written. It returns both sides' row counts per table.
func (s *Store) Copy(ctx context.Context, src CopySource, progress CopyProgress) ([]CopyCount, error) {
	if err := s.checkCopyTarget(ctx, src.Reports); err != nil {
		return nil, err
	}
	var tokens int64 // connections of the source with tokens
	for _, t := range copyTables {
		if err := s.copyTable(ctx, src.Reports, t, progress); err != nil {
			return nil, err
		}
		if t.name == "connection" {
			n, err := s.copyTokens(ctx, src, progress)
			if err != nil {
				return nil, err
			}
			tokens = n
		}
	}
	for _, q := range []string{
		"INSERT INTO connection_lease (connection_id) SELECT id FROM connection ON CONFLICT DO NOTHING",
		"SELECT setval(pg_get_serial_sequence('connection', 'id'), greatest((SELECT max(id) FROM connection), 1))",
		"SELECT setval(pg_get_serial_sequence('sync_run', 'id'), greatest((SELECT max(id) FROM sync_run), 1))",
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			return nil, dbError("copy", err, "")
		}
	}
	counts, err := s.copyCounts(ctx, src.Reports)
	if err != nil {
		return nil, err
	}
	c := CopyCount{Table: "vault.token", Source: tokens}
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM vault.token").Scan(&c.Target); err != nil {
		return nil, dbError("copy: counting vault.token", err, "")
	}
	return append(counts, c), nil
}

func (s *Store) checkCopyTarget(ctx context.Context, src *sql.DB) error {
	names := map[int64]string{}
	rows, err := src.QueryContext(ctx, "SELECT id, name FROM connection")
	if err != nil {
		return fmt.Errorf("copy: reading the source: %w", err)
	}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			rows.Close()
			return err
		}
		names[id] = name
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	prows, err := s.pool.Query(ctx, "SELECT id, name FROM connection ORDER BY id")
	if err != nil {
		return dbError("copy", err, "")
	}
	defer prows.Close()
	for prows.Next() {
		var id int64
		var name string
		if err := prows.Scan(&id, &name); err != nil {
			return dbError("copy", err, "")
		}
		if names[id] != name {
			return fmt.Errorf("copy: the target database already has connection %d %q, which the source does not: copy only into an empty database (or one holding an earlier copy of this store)", id, name)
		}
	}
	return prows.Err()
}

func (s *Store) copyTable(ctx context.Context, src *sql.DB, t copyTable, progress CopyProgress) error {
	var total int64
	if err := src.QueryRowContext(ctx, "SELECT count(*) FROM "+t.source()).Scan(&total); err != nil {
		return fmt.Errorf("copy: reading %s: %w", t.name, err)
	}
	rows, err := src.QueryContext(ctx, "SELECT "+strings.Join(t.cols, ", ")+" FROM "+t.source()+" ORDER BY "+t.orderBy)
	if err != nil {
		return fmt.Errorf("copy: reading %s: %w", t.name, err)
	}
	defer rows.Close()
	params := make([]string, len(t.cols))
	for i, c := range t.cols {
		params[i] = fmt.Sprintf("$%d", i+1)
		if t.json[c] {
			params[i] += "::text::json"
		}
	}
	insert := "INSERT INTO " + t.name + " (" + strings.Join(t.cols, ", ") + ") VALUES (" + strings.Join(params, ", ") + ") ON CONFLICT DO NOTHING"
	var done int64
	batch := &pgx.Batch{}
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		n := int64(batch.Len())
		tx, err := s.begin(ctx)
		if err != nil {
			return dbError("copy "+t.name, err, "")
		}
		defer tx.Rollback(ctx)
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return dbError("copy "+t.name, err, "")
		}
		if err := tx.Commit(ctx); err != nil {
			return dbError("copy "+t.name, err, "")
		}
		done += n
		batch = &pgx.Batch{}
		if progress != nil {
			progress(t.name, done, total)
		}
		return nil
	}
	for rows.Next() {
		vals := make([]any, len(t.cols))
		ptrs := make([]any, len(t.cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("copy: reading %s: %w", t.name, err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		batch.Queue(insert, vals...)
		if batch.Len() >= copyBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("copy: reading %s: %w", t.name, err)
	}
	if err := flush(); err != nil {
		return err
	}
	if progress != nil && total == 0 {
		progress(t.name, 0, 0)
	}
	return nil
}

// copyTokens copies each connection's tokens not yet in the vault, sealed
// with this store's key.
func (s *Store) copyTokens(ctx context.Context, src CopySource, progress CopyProgress) (found int64, err error) {
	rows, err := s.pool.Query(ctx, "SELECT id FROM connection ORDER BY id")
	if err != nil {
		return 0, dbError("copy tokens", err, "")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, dbError("copy tokens", err, "")
	}
	var done int64
	for _, id := range ids {
		tok, err := src.Token(ctx, id)
		if errors.Is(err, store.ErrNoToken) {
			done++
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("copy: tokens of connection %d: %w", id, err)
		}
		found++
		tx, err := s.begin(ctx)
		if err != nil {
			return 0, dbError("copy tokens", err, "")
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM vault.token WHERE connection_id = $1)", id).Scan(&exists); err != nil {
			tx.Rollback(ctx)
			return 0, dbError("copy tokens", err, "")
		}
		if !exists {
			if _, err := s.writeToken(ctx, tx, id, tok.BaseURL, tok.Token, -1); err != nil {
				tx.Rollback(ctx)
				return 0, err
			}
		}
		if err := commitDurably(ctx, tx); err != nil {
			return 0, dbError("copy tokens", err, "")
		}
		done++
		if progress != nil {
			progress("vault.token", done, int64(len(ids)))
		}
	}
	return found, nil
}

func (s *Store) copyCounts(ctx context.Context, src *sql.DB) ([]CopyCount, error) {
	var out []CopyCount
	for _, t := range copyTables {
		c := CopyCount{Table: t.name}
		if err := src.QueryRowContext(ctx, "SELECT count(*) FROM "+t.source()).Scan(&c.Source); err != nil {
			return nil, fmt.Errorf("copy: counting %s: %w", t.name, err)
		}
		if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+t.name).Scan(&c.Target); err != nil {
			return nil, dbError("copy: counting "+t.name, err, "")
		}
		out = append(out, c)
	}
	return out, nil
}
