package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/store"
)

// SaveEverReal upserts the connection's snapshot for the period and records
// the success on the connection, in one transaction.
func (s *Store) SaveEverReal(ctx context.Context, connID int64, period, fetchedAt time.Time, snap store.EverRealSnapshot) error {
	scopes := snap.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	scopesJSON, err := json.Marshal(scopes)
	if err != nil {
		return err
	}
	err = s.writeSnapshot(ctx, connID, func(tx pgx.Tx) error {
		at := period.UTC().Format(store.TimeFormat)
		if _, err := tx.Exec(ctx, "DELETE FROM everreal_snapshot WHERE connection_id = $1 AND snapshot_at = $2", connID, at); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO everreal_snapshot (connection_id, snapshot_at, fetched_at, user_id, email,
			    first_name, last_name, is_active, is_tenant, terms_accepted, language, company_id,
			    company_name, partner_id, partner_name, partner_subdomain, scopes, raw)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::text::json, $18::text::json)`,
			connID, at, fetchedAt.UTC().Format(store.TimeFormat), snap.UserID, nullable(snap.Email),
			nullable(snap.FirstName), nullable(snap.LastName), b2i(snap.IsActive), b2i(snap.IsTenant), b2i(snap.TermsAccepted),
			nullable(snap.Language), nullable(snap.CompanyID), nullable(snap.CompanyName), nullable(snap.PartnerID),
			nullable(snap.PartnerName), nullable(snap.PartnerSubdomain), string(scopesJSON), rawText(snap.Raw))
		if err != nil {
			return err
		}
		for i, c := range snap.Companies {
			if _, err := tx.Exec(ctx, `INSERT INTO everreal_company
				(connection_id, snapshot_at, position, company_id, name, is_default) VALUES ($1, $2, $3, $4, $5, $6)`,
				connID, at, i, c.ID, nullable(c.Name), b2i(c.IsDefault)); err != nil {
				return err
			}
		}
		return s.recordSuccess(ctx, tx, connID, fetchedAt)
	})
	if err == nil {
		s.rows.Add("everreal", 1+int64(len(snap.Companies)))
	}
	return err
}

// SaveEstateGuru upserts the connection's portfolio snapshot for the
// period, its investments (by COPY, summed as they stream) and totals, and
// records the success, in one transaction. The investments' foreign key on
// their snapshot row is deferred to the commit, so the row carrying their
// sums goes in last and the sequence is read once.
func (s *Store) SaveEstateGuru(ctx context.Context, connID int64, period, fetchedAt time.Time, snap store.EstateGuruSnapshot) error {
	var seqErr error
	var written int64
	err := s.writeSnapshot(ctx, connID, func(tx pgx.Tx) error {
		at := period.UTC().Format(store.TimeFormat)
		if _, err := tx.Exec(ctx, "DELETE FROM estateguru_snapshot WHERE connection_id = $1 AND snapshot_at = $2", connID, at); err != nil {
			return err
		}
		var sum store.Investment
		var count int64
		if snap.Investments != nil {
			next, stop := iter.Pull2(snap.Investments)
			defer stop()
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"estateguru_investment"},
				[]string{"connection_id", "snapshot_at", "position", "loan_id", "name", "quantity",
					"investment_amount_cents", "market_value_cents", "principal_left_cents", "profit_cents",
					"realized_income_cents", "change_cents", "resource_path"},
				pgx.CopyFromFunc(func() ([]any, error) {
					inv, err, ok := next()
					if !ok {
						return nil, nil
					}
					if err != nil {
						seqErr = err
						return nil, err
					}
					if err := sum.AddTotals(inv); err != nil {
						seqErr = err // the answer's fault, not the database's
						return nil, err
					}
					row := []any{connID, at, count, nullable(inv.LoanID), nullable(inv.Name), inv.Quantity,
						inv.InvestmentAmountCents, inv.MarketValueCents, inv.PrincipalLeftCents, inv.ProfitCents,
						inv.RealizedIncomeCents, inv.ChangeCents, nullable(inv.ResourcePath)}
					count++
					return row, nil
				}))
			if err != nil {
				return err
			}
		}
		currency, cash := snap.CurrencyAndCash()
		_, err := tx.Exec(ctx, `
			INSERT INTO estateguru_snapshot (connection_id, snapshot_at, fetched_at, currency, cash_cents,
			    investments, investment_amount_cents, market_value_cents, principal_left_cents,
			    profit_cents, realized_income_cents, raw)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::json)`,
			connID, at, fetchedAt.UTC().Format(store.TimeFormat), nullable(currency), cash,
			count, sum.InvestmentAmountCents, sum.MarketValueCents, sum.PrincipalLeftCents,
			sum.ProfitCents, sum.RealizedIncomeCents, rawText(snap.Raw))
		if err != nil {
			return err
		}
		written = 1 + count
		return s.recordSuccess(ctx, tx, connID, fetchedAt)
	})
	// The sequence's own error (estateguru.ErrNotStreamed, a decoding
	// error) is the caller's, not a fault of the database.
	if seqErr != nil && err != nil {
		return seqErr
	}
	if err == nil {
		s.rows.Add("estateguru", written)
	}
	return err
}

func (s *Store) recordSuccess(ctx context.Context, tx pgx.Tx, connID int64, at time.Time) error {
	t := at.UTC().Format(store.TimeFormat)
	_, err := tx.Exec(ctx, `UPDATE connection SET last_success_at = $1, last_error = NULL, updated_at = $1
		WHERE id = $2`, t, connID)
	return err
}

// writeSnapshot runs write in one transaction. When this process holds a
// claim on the connection (a sync's turn), the same transaction records the
// claimed period as synced by this instance, and checks the claim is still
// this instance's (the fence): a snapshot is never committed by an instance
// whose turn another has taken over, and a snapshot committed is never
// synced again in its period by another, even if its instance dies at once.
func (s *Store) writeSnapshot(ctx context.Context, connID int64, write func(pgx.Tx) error) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return dbError("write snapshot", err, "")
	}
	defer tx.Rollback(ctx)
	if c := s.heldClaim(connID); c != nil {
		tag, err := tx.Exec(ctx, `UPDATE connection_lease SET synced_period = CASE WHEN $4 <> '' THEN $4 ELSE synced_period END,
			synced_by = CASE WHEN $4 <> '' THEN $2 ELSE synced_by END
			WHERE connection_id = $1 AND holder = $2 AND fence = $3`, connID, s.instance, c.fence, c.period)
		if err != nil {
			return dbError("write snapshot", err, "")
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("pgstore: write snapshot: %w; the snapshot is left to the instance that holds it now", ErrLeaseLost)
		}
	}
	if err := write(tx); err != nil {
		return dbError("write snapshot", err, "")
	}
	if err := tx.Commit(ctx); err != nil {
		return dbError("write snapshot", err, "")
	}
	return nil
}

func rawText(raw []byte) string {
	if raw == nil {
		return ""
	}
	return string(raw)
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// Retain deletes snapshots whose period started before olderThan (their
// companies and investments go with them by cascade), in one transaction.
func (s *Store) Retain(ctx context.Context, olderThan time.Time) (int, error) {
	cutoff := olderThan.UTC().Format(store.TimeFormat)
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, dbError("retention", err, "")
	}
	defer tx.Rollback(ctx)
	n := 0
	for _, table := range []string{"everreal_snapshot", "estateguru_snapshot"} {
		tag, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE snapshot_at < $1", cutoff)
		if err != nil {
			return 0, dbError("retention", err, "")
		}
		n += int(tag.RowsAffected())
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, dbError("retention", err, "")
	}
	return n, nil
}
