// Package syncer carries the reporting schema into the binary. It lives at the
// module root only because go:embed cannot reach a parent directory, and
// schema.sql belongs at the top where people reading the project find it.
package syncer

import _ "embed"

// Schema is schema.sql: the tables and views of snapshots.db. Every statement
// in it is safe to run again.
//
//go:embed schema.sql
var Schema string

// SchemaVersion is the user_version a snapshots.db migrated by this binary
// carries. Raise it whenever schema.sql changes; a database with a higher
// version was written by a newer syncer and is refused.
//
// 1: tables and the base views. 2: the latest_* views seek the newest
// snapshot through the primary key; latest_everreal_companies and the report
// views (estateguru_portfolio_history, estateguru_investment_changes,
// everreal_users_by_company, everreal_scope_changes). 3: connection.state_since,
// sync_run.connections_skipped and connections_warned (and the views'
// columns of the same names), notify_state, sync_result_by_connection; see AddedColumns.
// 4: estateguru_portfolio_history partitions by connection id and name, so a
// filter on one connection reaches inside the window (same rows and columns).
// 5: storage that grows with change: an older snapshot keeps only the
// investment rows that differ from the snapshot after it, and raw answers of
// 512 bytes or more are kept in deduplicated pieces (estateguru_raw_chunk);
// the views expand both and answer as before. The history written before is
// compacted after the schema change, in bounded transactions (store_pending).
const SchemaVersion = 5

// AddedColumns are the columns added to tables after version 1, which
// CREATE TABLE IF NOT EXISTS cannot add to an existing table: the store adds
// each one that is missing before it runs schema.sql.
var AddedColumns = []struct{ Table, Column, Decl string }{
	{"connection", "state_since", "TEXT"},
	{"sync_run", "connections_skipped", "INTEGER NOT NULL DEFAULT 0"},
	{"sync_run", "connections_warned", "INTEGER NOT NULL DEFAULT 0"},
	{"estateguru_snapshot", "raw_chunks", "TEXT"},
}
