package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"path/filepath"
	"time"
)

// EverRealSnapshot is one users/me answer, as stored.
type EverRealSnapshot struct {
	UserID, Email, FirstName, LastName       string
	IsActive, IsTenant, TermsAccepted        bool
	Language, CompanyID, CompanyName         string
	PartnerID, PartnerName, PartnerSubdomain string
	Scopes                                   []string
	Companies                                []Company
	Raw                                      []byte
}

// Company is one of an EverReal user's companies.
type Company struct {
	ID, Name  string
	IsDefault bool
}

// EstateGuruSnapshot is one userInvestments answer, as stored.
type EstateGuruSnapshot struct {
	Currency  string
	CashCents int64
	// Investments yields the portfolio's lines in the answer's order; it
	// is read once, as the rows are written. An error ends the save with
	// nothing of it stored. A sequence rather than a slice also spares a
	// caller holding its own decoded type a copy: for 100,000 investments
	// that copy was 11 MB and 50-100 ms.
	Investments iter.Seq2[Investment, error]
	// Cash, if set, gives the currency and cash in place of Currency and
	// CashCents, and is called only once Investments has been read to its
	// end: an answer decoded as it is stored knows them only then.
	Cash func() (currency string, cashCents int64)
	Raw  []byte
}

// CurrencyAndCash is the snapshot's currency and cash: from Cash if set.
// Call it after reading Investments.
func (s EstateGuruSnapshot) CurrencyAndCash() (string, int64) {
	if s.Cash != nil {
		return s.Cash()
	}
	return s.Currency, s.CashCents
}

// Investment is one line of an EstateGuru portfolio. Money is in cents.
type Investment struct {
	LoanID                string
	Name                  string
	Quantity              int64
	InvestmentAmountCents int64
	MarketValueCents      int64
	PrincipalLeftCents    int64
	ProfitCents           int64
	RealizedIncomeCents   int64
	ChangeCents           int64
	ResourcePath          string
}

// AddTotals adds inv's money fields to t's (t being a snapshot's totals).
// It fails, changing nothing, when a total would pass what 64-bit cents
// hold: the answer is refused, not stored with its totals wrapped around.
// (Called once per investment: nothing here may allocate.)
func (t *Investment) AddTotals(inv Investment) error {
	var ok [5]bool
	next := *t
	next.InvestmentAmountCents, ok[0] = addCents(t.InvestmentAmountCents, inv.InvestmentAmountCents)
	next.MarketValueCents, ok[1] = addCents(t.MarketValueCents, inv.MarketValueCents)
	next.PrincipalLeftCents, ok[2] = addCents(t.PrincipalLeftCents, inv.PrincipalLeftCents)
	next.ProfitCents, ok[3] = addCents(t.ProfitCents, inv.ProfitCents)
	next.RealizedIncomeCents, ok[4] = addCents(t.RealizedIncomeCents, inv.RealizedIncomeCents)
	for i, field := range [...]string{"investment_amount", "market_value", "principal_left", "profit", "realized_income"} {
		if !ok[i] {
			return fmt.Errorf("the investments' %s amounts add up to more than syncer can hold (%d cents); the answer was not stored", field, int64(math.MaxInt64))
		}
	}
	*t = next
	return nil
}

// addCents is a + b, and whether it did not overflow.
func addCents(a, b int64) (int64, bool) {
	sum := a + b
	return sum, (b >= 0) == (sum >= a)
}

// SaveEverReal upserts the connection's snapshot for the period starting at
// period and records the success on the connection, in one transaction: a
// reader sees the old snapshot or the new one, never half of either.
func (s *Store) SaveEverReal(ctx context.Context, connID int64, period, fetchedAt time.Time, snap EverRealSnapshot) error {
	scopes := snap.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	scopesJSON, err := json.Marshal(scopes)
	if err != nil {
		return err
	}
	err = s.writeSnapshot(ctx, len(snap.Raw), func(ctx context.Context, _ *sql.Conn, sqlTx *sql.Tx) error {
		tx := s.snapshots.prepare(sqlTx)
		at := period.UTC().Format(TimeFormat)
		if _, err := tx.exec(ctx, "DELETE FROM everreal_snapshot WHERE connection_id = ? AND snapshot_at = ?", connID, at); err != nil {
			return err
		}
		_, err := tx.exec(ctx, `
			INSERT INTO everreal_snapshot (connection_id, snapshot_at, fetched_at, user_id, email,
			    first_name, last_name, is_active, is_tenant, terms_accepted, language, company_id,
			    company_name, partner_id, partner_name, partner_subdomain, scopes, raw)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			connID, at, fetchedAt.UTC().Format(TimeFormat), snap.UserID, nullable(snap.Email),
			nullable(snap.FirstName), nullable(snap.LastName), snap.IsActive, snap.IsTenant, snap.TermsAccepted,
			nullable(snap.Language), nullable(snap.CompanyID), nullable(snap.CompanyName), nullable(snap.PartnerID),
			nullable(snap.PartnerName), nullable(snap.PartnerSubdomain), string(scopesJSON), string(snap.Raw))
		if err != nil {
			return err
		}
		for i, c := range snap.Companies {
			if _, err := tx.exec(ctx, `INSERT INTO everreal_company
				(connection_id, snapshot_at, position, company_id, name, is_default) VALUES (?, ?, ?, ?, ?, ?)`,
				connID, at, i, c.ID, nullable(c.Name), c.IsDefault); err != nil {
				return err
			}
		}
		return recordSuccess(ctx, tx, connID, fetchedAt)
	})
	if err == nil {
		s.rows.Add("everreal", 1+int64(len(snap.Companies)))
	}
	return err
}

// SaveEstateGuru upserts the connection's portfolio snapshot for the period
// starting at period, its investments and totals, and records the success on
// the connection, in one transaction.
//
// The snapshot row goes in first (the rows' foreign key needs it), then the
// investments, summed as they are written, so the sequence is read only
// once, then the row's totals and raw answer.
//
// Then the history is kept to what changed (schema 5, history.go): the
// snapshot before this one loses the rows this one repeats, and the raw
// answer is stored in pieces shared with that snapshot.
func (s *Store) SaveEstateGuru(ctx context.Context, connID int64, period, fetchedAt time.Time, snap EstateGuruSnapshot) error {
	var written int64
	err := s.writeSnapshot(ctx, len(snap.Raw), func(ctx context.Context, conn *sql.Conn, sqlTx *sql.Tx) error {
		tx := s.snapshots.prepare(sqlTx)
		at := period.UTC().Format(TimeFormat)
		var replacing bool
		if err := tx.queryRow(ctx, "SELECT count(*) > 0 FROM estateguru_snapshot WHERE connection_id = ? AND snapshot_at = ?",
			connID, at).Scan(&replacing); err != nil {
			return err
		}
		if replacing {
			// The period's old rows go, after the snapshot before it has
			// taken the ones it was reading from them. The snapshot row
			// itself is updated below.
			if err := detach(ctx, tx, connID, at); err != nil {
				return err
			}
			if _, err := tx.exec(ctx, "DELETE FROM estateguru_investment WHERE connection_id = ? AND snapshot_at = ?", connID, at); err != nil {
				return err
			}
		}
		prev, next, err := neighbours(ctx, tx, connID, at)
		if err != nil {
			return err
		}
		if !replacing {
			// The snapshot row goes in first, for the rows' foreign key
			// on it; its totals and raw answer are set below, once the
			// rows are written. (PRAGMA defer_foreign_keys, the other way,
			// makes SQLite throw away every statement it has prepared on
			// the connection, and parse them all again.)
			if _, err := tx.exec(ctx, `
				INSERT INTO estateguru_snapshot (connection_id, snapshot_at, fetched_at, cash_cents,
				    investments, investment_amount_cents, market_value_cents, principal_left_cents,
				    profit_cents, realized_income_cents, raw)
				VALUES (?, ?, ?, 0, 0, 0, 0, 0, 0, 0, '')`, connID, at, fetchedAt.UTC().Format(TimeFormat)); err != nil {
				return err
			}
		}
		if prev.at != "" && next.at != "" {
			// A period older than the newest (the clock went back): the
			// snapshot before it was reading some rows from later ones,
			// which the new rows would now stand in front of.
			if err := materialize(ctx, tx, connID, prev); err != nil {
				return err
			}
		}
		sum, count, err := insertInvestments(ctx, conn, tx, connID, at, snap.Investments)
		if err != nil {
			return err
		}
		if err := growPositions(ctx, tx, count); err != nil {
			return err
		}
		// The pieces most likely repeated: those of the snapshot this one
		// replaces, or else of the one before it.
		from := prev.at
		if replacing {
			from = at
		}
		var known map[[32]byte]int64
		if len(snap.Raw) >= rawChunkMin {
			if known, err = knownPieces(ctx, tx, connID, from); err != nil {
				return err
			}
		}
		raw, chunks, err := storeRaw(ctx, tx, snap.Raw, known)
		if err != nil {
			return err
		}
		currency, cash := snap.CurrencyAndCash()
		_, err = tx.exec(ctx, `
			UPDATE estateguru_snapshot SET fetched_at = ?, currency = ?, cash_cents = ?, investments = ?,
			    investment_amount_cents = ?, market_value_cents = ?, principal_left_cents = ?,
			    profit_cents = ?, realized_income_cents = ?, raw = CAST(? AS TEXT), raw_chunks = ?
			WHERE connection_id = ? AND snapshot_at = ?`,
			fetchedAt.UTC().Format(TimeFormat), nullable(currency), cash,
			count, sum.InvestmentAmountCents, sum.MarketValueCents, sum.PrincipalLeftCents,
			sum.ProfitCents, sum.RealizedIncomeCents, raw, chunks, connID, at)
		if err != nil {
			return err
		}
		if prev.at != "" {
			if err := compact(ctx, tx, connID, prev.at, at); err != nil {
				return err
			}
		}
		if next.at != "" {
			if err := compact(ctx, tx, connID, at, next.at); err != nil {
				return err
			}
		}
		written = 1 + count
		return recordSuccess(ctx, tx, connID, fetchedAt)
	})
	if err == nil {
		s.rows.Add("estateguru", written)
	}
	// The sequence's own error is the caller's, not a fault of the file.
	if se, ok := errors.AsType[sequenceError](err); ok {
		return se.err
	}
	return err
}

// sequenceError carries an error of the investments' sequence out of the
// transaction.
type sequenceError struct{ err error }

func (e sequenceError) Error() string { return e.err.Error() }
func (e sequenceError) Unwrap() error { return e.err }

// InvestmentsOf is a list of investments as a snapshot's sequence.
func InvestmentsOf(list []Investment) iter.Seq2[Investment, error] {
	return func(yield func(Investment, error) bool) {
		for _, inv := range list {
			if !yield(inv, nil) {
				return
			}
		}
	}
}

// investmentBatch rows go into one INSERT: one statement round trip per
// batch instead of per row. With this driver the cost per row is flat from
// 16 to 256 rows a statement; one row a statement was a third slower.
// 2 + 11 x 64 variables stay far under SQLite's 32766.
const investmentBatch = 64

// insertInvestments inserts the rows in batches through the driver's own
// prepared statement (sql.Conn.Raw), inside the transaction open on conn.
// database/sql would allocate a fresh copy of the arguments on every call:
// 13 values a row, 1.3 million for a portfolio of 100,000 investments, which
// was most of the garbage (and so of the peak memory) of a large run. The
// connection id and period are bound once per batch (?1, ?2), not per row.
// The last, partial batch goes through tx's statements prepared once
// (database.prepared): a portfolio of 50 investments is only that batch,
// and parsing an INSERT of 50 rows at every save was dear.
// It returns the rows' sums (in the money fields) and their count.
func insertInvestments(ctx context.Context, conn *sql.Conn, tx preparedTx, connID int64, at string, invs iter.Seq2[Investment, error]) (sum Investment, count int64, err error) {
	if invs == nil {
		return sum, 0, nil
	}
	args := make([]driver.NamedValue, 0, 2+investmentBatch*11)
	rows := 0
	// A panic in the sequence (the caller's code) must not unwind through
	// conn.Raw: database/sql then closes the connection, which waits for
	// the transaction open on it, for ever. It is raised again after.
	var panicked any
	defer func() {
		if panicked != nil {
			panic(panicked)
		}
	}()
	err = conn.Raw(func(dc any) (err error) {
		defer func() {
			if p := recover(); p != nil {
				panicked, err = p, errors.New("the investments' sequence panicked")
			}
		}()
		prep, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("store: the sqlite driver (%T) cannot prepare statements with a context", dc)
		}
		var full driver.Stmt // the statement of a whole batch, prepared once
		defer func() {
			if full != nil {
				full.Close()
			}
		}()
		for inv, err := range invs {
			if err != nil {
				return sequenceError{err}
			}
			if err := sum.AddTotals(inv); err != nil {
				return err
			}
			if rows == 0 {
				args = append(args[:0], driver.NamedValue{Ordinal: 1, Value: connID}, driver.NamedValue{Ordinal: 2, Value: at})
			}
			for _, v := range [...]driver.Value{count, nullable(inv.LoanID), nullable(inv.Name), inv.Quantity,
				inv.InvestmentAmountCents, inv.MarketValueCents, inv.PrincipalLeftCents, inv.ProfitCents,
				inv.RealizedIncomeCents, inv.ChangeCents, nullable(inv.ResourcePath)} {
				args = append(args, driver.NamedValue{Ordinal: len(args) + 1, Value: v})
			}
			rows++
			count++
			if rows < investmentBatch {
				continue
			}
			if full == nil {
				if full, err = prep.PrepareContext(ctx, investmentInsert(investmentBatch)); err != nil {
					return err
				}
			}
			ex, ok := full.(driver.StmtExecContext)
			if !ok {
				return fmt.Errorf("store: the sqlite driver's statements (%T) cannot run with a context", full)
			}
			if _, err := ex.ExecContext(ctx, args); err != nil {
				return err
			}
			rows = 0
		}
		return nil
	})
	if err != nil || rows == 0 {
		return sum, count, err
	}
	const perRow = 11
	last := make([]any, 0, len(args))
	err = inPowersOfTwo(rows, func(from, n int) error {
		last = append(last[:0], connID, at)
		for _, a := range args[2+perRow*from : 2+perRow*(from+n)] {
			last = append(last, a.Value)
		}
		_, err := tx.exec(ctx, investmentInsert(n), last...)
		return err
	})
	return sum, count, err
}

// positionBatch positions go into one INSERT (growPositions).
const positionBatch = 512

// growPositions makes estateguru_position (the numbers the history views
// walk a snapshot's positions with) reach n, in batches of bound values.
// The triggers on estateguru_snapshot would do it too, with a recursive
// query: 130 ms for the first portfolio of 100,000 investments in a
// database, against about 40 ms this way. They then find nothing to do.
func growPositions(ctx context.Context, tx preparedTx, n int64) error {
	var next int64
	if err := tx.queryRow(ctx, "SELECT coalesce(max(k) + 1, 0) FROM estateguru_position").Scan(&next); err != nil {
		return err
	}
	args := make([]any, 0, positionBatch)
	for next < n {
		args = args[:0]
		for ; next < n && len(args) < positionBatch; next++ {
			args = append(args, next)
		}
		err := inPowersOfTwo(len(args), func(from, size int) error {
			_, err := tx.exec(ctx, "INSERT INTO estateguru_position (k) VALUES "+repeatJoin("(?)", size), args[from:from+size]...)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// investmentInsert is the INSERT of n rows: (?1, ?2, ...) repeats the
// connection id and period in each.
func investmentInsert(n int) string {
	const head = `INSERT INTO estateguru_investment (connection_id, snapshot_at, position, loan_id, name,
		quantity, investment_amount_cents, market_value_cents, principal_left_cents, profit_cents,
		realized_income_cents, change_cents, resource_path) VALUES `
	return head + repeatJoin("(?1,?2,?,?,?,?,?,?,?,?,?,?,?)", n)
}

func repeatJoin(s string, n int) string {
	b := make([]byte, 0, n*(len(s)+1))
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s...)
	}
	return string(b)
}

// recordSuccess records the snapshot's time on its connection. A
// connection gone meanwhile fails the write (its snapshot row's foreign key
// already does, at the INSERT): never at the commit, where it would fail
// every other write committed in the same batch (group).
func recordSuccess(ctx context.Context, tx preparedTx, connID int64, at time.Time) error {
	res, err := tx.exec(ctx, `UPDATE connection SET last_success_at = ?, last_error = NULL, updated_at = ?
		WHERE id = ?`, at.UTC().Format(TimeFormat), at.UTC().Format(TimeFormat), connID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("connection %d no longer exists", connID)
	}
	return nil
}

// aloneFrom is the raw answer's size from which a snapshot is committed in
// a transaction of its own (database.writeAlone): about 200 investments.
const aloneFrom = 64 << 10

// writeSnapshot runs write in a write transaction, shared with other
// writes (group) unless the answer is size bytes from aloneFrom, on the
// connection it holds for the whole of it, so write may also use the
// driver's connection (insertInvestments does).
func (s *Store) writeSnapshot(ctx context.Context, size int, write func(context.Context, *sql.Conn, *sql.Tx) error) error {
	group := s.snapshots.group
	if size >= aloneFrom {
		group = s.snapshots.writeAlone
	}
	if err := group(ctx, write); err != nil {
		return fileError(filepath.Join(s.dir, SnapshotsFile), "write snapshot to", err)
	}
	return nil
}

// rawText is a raw answer as the argument of CAST(? AS TEXT): the bytes
// themselves, not string(raw), which for a portfolio of 100,000 investments
// would copy 30 MB more before the driver copies them once again; SQLite
// stores the same text either way. A nil raw is the empty text, as
// string(nil) was (the driver would bind nil bytes as NULL).
func rawText(raw []byte) any {
	if raw == nil {
		return ""
	}
	return raw
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// PeriodStart returns the start of the snapshot period holding t: periods
// are multiples of period counted from the Unix epoch, in UTC, so 24h means
// calendar days in UTC.
func PeriodStart(t time.Time, period time.Duration) time.Time {
	return t.UTC().Truncate(period)
}
