-- PostgreSQL version 5 (SQLite schema 4): estateguru_portfolio_history
-- partitions its window by the connection's id and name (one partition per
-- connection, as before), so a filter on either column is applied before
-- the window instead of after it: one connection's history reads that
-- connection's snapshots, not every snapshot ever taken. Same columns, same
-- rows; CREATE OR REPLACE keeps the reporting role's grants.

CREATE OR REPLACE VIEW estateguru_portfolio_history AS
SELECT c.name AS connection, s.snapshot_at,
       lag(s.snapshot_at) OVER w AS previous_snapshot_at,
       s.currency, s.investments,
       s.cash_cents, s.investment_amount_cents, s.market_value_cents,
       s.principal_left_cents, s.profit_cents, s.realized_income_cents,
       s.cash_cents + s.market_value_cents AS value_cents,
       s.cash_cents - lag(s.cash_cents) OVER w AS cash_change_cents,
       s.investment_amount_cents - lag(s.investment_amount_cents) OVER w AS investment_amount_change_cents,
       s.market_value_cents - lag(s.market_value_cents) OVER w AS market_value_change_cents,
       s.profit_cents - lag(s.profit_cents) OVER w AS profit_change_cents,
       s.cash_cents + s.market_value_cents
           - lag(s.cash_cents + s.market_value_cents) OVER w AS value_change_cents,
       s.connection_id
FROM estateguru_snapshot s JOIN connection c ON c.id = s.connection_id
WINDOW w AS (PARTITION BY s.connection_id, c.name ORDER BY s.snapshot_at);
