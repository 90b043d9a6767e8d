package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"strconv"
	"unicode/utf8"
)

// How the history grows with change, not with time (schema 5; schema.sql
// says what the tables hold and docs/views.md what a reader sees):
//
//   - Investments: a connection's newest snapshot holds all its rows; an
//     older one only the rows that differ from the snapshot after it. The
//     investment at position k of snapshot S is the row at position k with
//     the smallest snapshot_at >= S (estateguru_investments resolves it).
//     Writing a snapshot deletes from the one before it the rows it repeats
//     (compact); deleting one first copies to the one before it the rows
//     that one read from it (the estateguru_snapshot_detach trigger).
//   - Raw answers of rawChunkMin bytes or more are cut into pieces after
//     each "},"; a piece the snapshot before holds too is shared with it
//     (estateguru_raw_chunk); the snapshot keeps the list of its pieces' ids.

// snapshotRef is a snapshot of one connection: its period and size.
type snapshotRef struct {
	at          string
	investments int64
}

// neighbours returns the connection's snapshots just before and just after
// at (an empty at: none).
func neighbours(ctx context.Context, tx preparedTx, connID int64, at string) (prev, next snapshotRef, err error) {
	err = tx.queryRow(ctx, `SELECT snapshot_at, investments FROM estateguru_snapshot
		WHERE connection_id = ? AND snapshot_at < ? ORDER BY snapshot_at DESC LIMIT 1`, connID, at).Scan(&prev.at, &prev.investments)
	if err != nil && err != sql.ErrNoRows {
		return prev, next, err
	}
	err = tx.queryRow(ctx, `SELECT snapshot_at, investments FROM estateguru_snapshot
		WHERE connection_id = ? AND snapshot_at > ? ORDER BY snapshot_at LIMIT 1`, connID, at).Scan(&next.at, &next.investments)
	if err == sql.ErrNoRows {
		err = nil
	}
	return prev, next, err
}

const investmentColumns = `position, loan_id, name, quantity, investment_amount_cents, market_value_cents,
	principal_left_cents, profit_cents, realized_income_cents, change_cents, resource_path`

// compact deletes from the snapshot at older the rows that the snapshot at
// newer (the next one of the connection) holds unchanged at the same
// position: older then reads them from newer.
func compact(ctx context.Context, tx preparedTx, connID int64, older, newer string) error {
	_, err := tx.exec(ctx, `DELETE FROM estateguru_investment
		WHERE connection_id = ?1 AND snapshot_at = ?2 AND position IN (
		    SELECT o.position FROM estateguru_investment o CROSS JOIN estateguru_investment n
		    WHERE o.connection_id = ?1 AND o.snapshot_at = ?2
		      AND n.connection_id = ?1 AND n.snapshot_at = ?3 AND n.position = o.position
		      AND n.loan_id IS o.loan_id AND n.name IS o.name AND n.quantity IS o.quantity
		      AND n.investment_amount_cents IS o.investment_amount_cents
		      AND n.market_value_cents IS o.market_value_cents
		      AND n.principal_left_cents IS o.principal_left_cents
		      AND n.profit_cents IS o.profit_cents
		      AND n.realized_income_cents IS o.realized_income_cents
		      AND n.change_cents IS o.change_cents AND n.resource_path IS o.resource_path)`,
		connID, older, newer)
	return err
}

// materialize gives the snapshot s a row of its own at every position it
// was reading from a later snapshot.
func materialize(ctx context.Context, tx preparedTx, connID int64, s snapshotRef) error {
	_, err := tx.exec(ctx, `INSERT INTO estateguru_investment (connection_id, snapshot_at, `+investmentColumns+`)
		SELECT i.connection_id, ?2, i.position, i.loan_id, i.name, i.quantity, i.investment_amount_cents,
		       i.market_value_cents, i.principal_left_cents, i.profit_cents, i.realized_income_cents,
		       i.change_cents, i.resource_path
		FROM estateguru_investment i
		WHERE i.connection_id = ?1 AND i.position < ?3 AND i.snapshot_at > ?2
		  AND i.snapshot_at = (SELECT min(m.snapshot_at) FROM estateguru_investment m
		                       WHERE m.connection_id = ?1 AND m.position = i.position AND m.snapshot_at > ?2)
		  AND NOT EXISTS (SELECT 1 FROM estateguru_investment o
		                  WHERE o.connection_id = ?1 AND o.snapshot_at = ?2 AND o.position = i.position)`,
		connID, s.at, s.investments)
	return err
}

// rawChunkMin is the size from which a raw answer is kept in pieces; a
// smaller one stays whole in its snapshot row. rawChunkMax bounds a piece
// with no "}," in it.
const (
	rawChunkMin = 512
	rawChunkMax = 8192
)

// chunkRaw cuts raw after each "}," (pieces of at least 64 bytes) and
// wherever a piece would grow past rawChunkMax, at the start of a UTF-8
// character if one is among the last few bytes (invalid UTF-8, which the
// decoder lets through in strings, may have none: stepping back further
// cut such an answer into pieces of one byte). The pieces concatenated
// are raw, byte for byte.
func chunkRaw(raw []byte) [][]byte {
	var out [][]byte
	for len(raw) > 0 {
		n := len(raw)
		if i := bytes.Index(raw[min(len(raw), 62):], []byte("},")); i >= 0 {
			n = min(len(raw), 62) + i + 2
		}
		if n > rawChunkMax {
			n = rawChunkMax
			for n > rawChunkMax-utf8.UTFMax+1 && !utf8.RuneStart(raw[n]) {
				n--
			}
		}
		out = append(out, raw[:n])
		raw = raw[n:]
	}
	return out
}

// storeRaw stores a raw answer: the text itself and a NULL list, or, from
// rawChunkMin bytes, ” and the JSON list of its pieces' ids. A piece among
// known (the pieces of the snapshot before it, or of the one it replaces,
// by their SHA-256: knownPieces) is shared with it; any other is inserted,
// in batches, with ids counted on from the largest. It counts the new
// list's references; the caller then writes the list into the snapshot row
// (the triggers count the old list's down).
//
// Sharing only with that one snapshot, not looking every piece up in the
// whole table, keeps a write from doing a query per piece: an answer of
// 100,000 investments is 100,000 pieces. A piece that comes back after a
// period without it is stored again.
func storeRaw(ctx context.Context, tx preparedTx, raw []byte, known map[[32]byte]int64) (text any, chunks any, err error) {
	if len(raw) < rawChunkMin {
		return rawText(raw), nil, nil
	}
	var next int64
	if err := tx.queryRow(ctx, "SELECT coalesce(max(id), 0) + 1 FROM estateguru_raw_chunk").Scan(&next); err != nil {
		return nil, nil, err
	}
	// New pieces go in with refs 1 (this snapshot), shared ones get one
	// more; in batches (see the triggers in schema.sql).
	var batch, shared []any
	seen := map[int64]bool{} // a piece twice in one answer counts once
	flush := func() error {
		err := inPowersOfTwo(len(batch)/2, func(from, n int) error {
			_, err := tx.exec(ctx, "INSERT INTO estateguru_raw_chunk (id, refs, data) VALUES "+
				repeatJoin("(?, 1, CAST(? AS TEXT))", n), batch[2*from:2*(from+n)]...)
			return err
		})
		if err != nil {
			return err
		}
		batch = batch[:0]
		err = inPowersOfTwo(len(shared), func(from, n int) error {
			_, err := tx.exec(ctx, "UPDATE estateguru_raw_chunk SET refs = refs + 1 WHERE id IN ("+
				repeatJoin("?", n)+")", shared[from:from+n]...)
			return err
		})
		shared = shared[:0]
		return err
	}
	list := make([]byte, 0, 8*len(raw)/256+2)
	list = append(list, '[')
	for i, piece := range chunkRaw(raw) {
		var id int64
		ok := false
		if len(known) > 0 { // nothing to share with: no need to hash (a first snapshot)
			id, ok = known[sha256.Sum256(piece)]
		}
		if !ok {
			id = next
			next++
			batch = append(batch, id, piece)
		} else if !seen[id] {
			seen[id] = true
			shared = append(shared, id)
		}
		if len(batch) >= 2*investmentBatch || len(shared) >= 2*investmentBatch {
			if err := flush(); err != nil {
				return nil, nil, err
			}
		}
		if i > 0 {
			list = append(list, ',')
		}
		list = strconv.AppendInt(list, id, 10)
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	list = append(list, ']')
	return "", string(list), nil
}

// detach copies to the connection's snapshot before at the rows of the
// snapshot at at that it reads (its positions without a row of its own),
// so the rows at at may go. The estateguru_snapshot_detach trigger does
// the same when a snapshot row is deleted.
func detach(ctx context.Context, tx preparedTx, connID int64, at string) error {
	_, err := tx.exec(ctx, `INSERT INTO estateguru_investment (connection_id, snapshot_at, `+investmentColumns+`)
		SELECT t.connection_id, p.snapshot_at, t.position, t.loan_id, t.name, t.quantity, t.investment_amount_cents,
		       t.market_value_cents, t.principal_left_cents, t.profit_cents, t.realized_income_cents,
		       t.change_cents, t.resource_path
		FROM (SELECT m.snapshot_at, m.investments FROM estateguru_snapshot m
		      WHERE m.connection_id = ?1 AND m.snapshot_at < ?2 ORDER BY m.snapshot_at DESC LIMIT 1) p
		CROSS JOIN estateguru_investment t
		WHERE t.connection_id = ?1 AND t.snapshot_at = ?2 AND t.position < p.investments
		  AND NOT EXISTS (SELECT 1 FROM estateguru_investment o
		                  WHERE o.connection_id = ?1 AND o.snapshot_at = p.snapshot_at AND o.position = t.position)`,
		connID, at)
	return err
}

// chunkSnapshot puts the raw answer of the snapshot at at into pieces, if it
// is whole and big enough, sharing those of the snapshot at from.
func chunkSnapshot(ctx context.Context, tx preparedTx, connID int64, at, from string) error {
	var raw []byte
	err := tx.queryRow(ctx, `SELECT CAST(raw AS BLOB) FROM estateguru_snapshot
		WHERE connection_id = ? AND snapshot_at = ? AND raw_chunks IS NULL AND length(CAST(raw AS BLOB)) >= ?`,
		connID, at, rawChunkMin).Scan(&raw)
	if err == sql.ErrNoRows {
		return nil
	}
	if err != nil {
		return err
	}
	known, err := knownPieces(ctx, tx, connID, from)
	if err != nil {
		return err
	}
	text, chunks, err := storeRaw(ctx, tx, raw, known)
	if err != nil {
		return err
	}
	_, err = tx.exec(ctx, "UPDATE estateguru_snapshot SET raw = ?, raw_chunks = ? WHERE connection_id = ? AND snapshot_at = ?",
		text, chunks, connID, at)
	return err
}

// knownPieces returns the pieces of the connection's snapshot at at (none:
// an empty map) by their SHA-256, for storeRaw.
func knownPieces(ctx context.Context, tx preparedTx, connID int64, at string) (map[[32]byte]int64, error) {
	known := map[[32]byte]int64{}
	if at == "" {
		return known, nil
	}
	rows, err := tx.query(ctx, `SELECT ch.id, CAST(ch.data AS BLOB) FROM estateguru_snapshot s
		CROSS JOIN json_each(s.raw_chunks) j CROSS JOIN estateguru_raw_chunk ch
		WHERE s.connection_id = ? AND s.snapshot_at = ? AND ch.id = j.value`, connID, at)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var data sql.RawBytes
		if err := rows.Scan(&id, &data); err != nil {
			return nil, err
		}
		known[sha256.Sum256(data)] = id
	}
	return known, rows.Err()
}
