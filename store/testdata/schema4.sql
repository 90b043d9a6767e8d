-- The reporting schema of snapshots.db.
--
-- Tables hold what syncer writes; views are the surface people and scripts
-- read (see "The reporting surface" in README.md). Views may gain columns;
-- they never lose or rename one without a migration note in the README.
--
-- Conventions: times are RFC 3339 UTC text ("2026-11-23T06:00:00Z"), money is
-- INTEGER minor units (*_cents), booleans are 0/1, JSON is text.
--
-- This file is applied whole, in one transaction, whenever the database's
-- user_version is below the binary's schema version, so every statement must
-- be safe to run again: CREATE ... IF NOT EXISTS for tables and indexes, DROP
-- and CREATE for views.

CREATE TABLE IF NOT EXISTS connection (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    provider           TEXT NOT NULL CHECK (provider IN ('everreal', 'estateguru')),
    base_url           TEXT NOT NULL,
    state              TEXT NOT NULL DEFAULT 'active'
                       CHECK (state IN ('active', 'reauth_required', 'disconnected')),
    access_expires_at  TEXT,
    refresh_expires_at TEXT,
    last_success_at    TEXT,
    last_error         TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    state_since        TEXT -- when state last changed (schema 3); NULL: not known
);

-- One row per connection and snapshot period. A second run in the same
-- period replaces the row (and, by cascade, its companies).
CREATE TABLE IF NOT EXISTS everreal_snapshot (
    connection_id     INTEGER NOT NULL REFERENCES connection (id),
    snapshot_at       TEXT NOT NULL,
    fetched_at        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    email             TEXT,
    first_name        TEXT,
    last_name         TEXT,
    is_active         INTEGER NOT NULL,
    is_tenant         INTEGER NOT NULL,
    terms_accepted    INTEGER NOT NULL,
    language          TEXT,
    company_id        TEXT,
    company_name      TEXT,
    partner_id        TEXT,
    partner_name      TEXT,
    partner_subdomain TEXT,
    scopes            TEXT NOT NULL, -- JSON array of strings
    raw               TEXT NOT NULL, -- the whole users/me answer
    PRIMARY KEY (connection_id, snapshot_at)
);

CREATE TABLE IF NOT EXISTS everreal_company (
    connection_id INTEGER NOT NULL,
    snapshot_at   TEXT NOT NULL,
    position      INTEGER NOT NULL, -- order in the answer
    company_id    TEXT NOT NULL,
    name          TEXT,
    is_default    INTEGER NOT NULL,
    PRIMARY KEY (connection_id, snapshot_at, position),
    FOREIGN KEY (connection_id, snapshot_at)
        REFERENCES everreal_snapshot (connection_id, snapshot_at) ON DELETE CASCADE
);

-- One row per connection and snapshot period; the totals are sums over the
-- snapshot's investments, computed when it is written.
CREATE TABLE IF NOT EXISTS estateguru_snapshot (
    connection_id           INTEGER NOT NULL REFERENCES connection (id),
    snapshot_at             TEXT NOT NULL,
    fetched_at              TEXT NOT NULL,
    currency                TEXT,
    cash_cents              INTEGER NOT NULL,
    investments             INTEGER NOT NULL,
    investment_amount_cents INTEGER NOT NULL,
    market_value_cents      INTEGER NOT NULL,
    principal_left_cents    INTEGER NOT NULL,
    profit_cents            INTEGER NOT NULL,
    realized_income_cents   INTEGER NOT NULL,
    raw                     TEXT NOT NULL, -- the whole userInvestments answer
    PRIMARY KEY (connection_id, snapshot_at)
);

CREATE TABLE IF NOT EXISTS estateguru_investment (
    connection_id           INTEGER NOT NULL,
    snapshot_at             TEXT NOT NULL,
    position                INTEGER NOT NULL, -- order in the answer
    loan_id                 TEXT,
    name                    TEXT,
    quantity                INTEGER NOT NULL,
    investment_amount_cents INTEGER NOT NULL,
    market_value_cents      INTEGER NOT NULL,
    principal_left_cents    INTEGER NOT NULL,
    profit_cents            INTEGER NOT NULL,
    realized_income_cents   INTEGER NOT NULL,
    change_cents            INTEGER NOT NULL,
    resource_path           TEXT,
    PRIMARY KEY (connection_id, snapshot_at, position),
    FOREIGN KEY (connection_id, snapshot_at)
        REFERENCES estateguru_snapshot (connection_id, snapshot_at) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sync_run (
    id                 INTEGER PRIMARY KEY,
    trigger            TEXT NOT NULL CHECK (trigger IN ('schedule', 'once', 'demo')),
    started_at         TEXT NOT NULL,
    finished_at        TEXT,
    status             TEXT NOT NULL DEFAULT 'running'
                       CHECK (status IN ('running', 'ok', 'partial', 'failed', 'interrupted')),
    connections_ok     INTEGER NOT NULL DEFAULT 0,
    connections_failed INTEGER NOT NULL DEFAULT 0,
    pid                INTEGER, -- the process running it, to find runs a crash left open
    -- schema 3: connections not attempted because they need re-login, and
    -- connections whose refresh token dies within SYNCER_REFRESH_WARN
    connections_skipped INTEGER NOT NULL DEFAULT 0,
    connections_warned  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS sync_result (
    run_id        INTEGER NOT NULL REFERENCES sync_run (id) ON DELETE CASCADE,
    connection_id INTEGER NOT NULL REFERENCES connection (id),
    status        TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
    error         TEXT,
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    PRIMARY KEY (run_id, connection_id)
);

-- What the notifications last announced for each connection (schema 3), so
-- a restart does not announce a change again. condition is ok, failing or
-- reauth_required; refresh_warned_for is the refresh token expiry already
-- warned about.
CREATE TABLE IF NOT EXISTS notify_state (
    connection_id      INTEGER PRIMARY KEY REFERENCES connection (id),
    condition          TEXT NOT NULL DEFAULT 'ok',
    refresh_warned_for TEXT,
    updated_at         TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS sync_run_unfinished ON sync_run (id) WHERE finished_at IS NULL;
-- A connection's results by status (schema 3): its last success and the
-- failures since, for the metrics and notifications after every run.
CREATE INDEX IF NOT EXISTS sync_result_by_connection ON sync_result (connection_id, status, run_id);

-- The reporting surface.
--
-- No index is added for it: every snapshot table's primary key starts with
-- (connection_id, snapshot_at), which is the index the latest_* views and
-- the reports walk. store/store_test.go checks their query plans.

DROP VIEW IF EXISTS connections;
CREATE VIEW connections AS
SELECT name, provider, base_url, state, access_expires_at, refresh_expires_at,
       last_success_at, last_error, created_at, id AS connection_id, state_since
FROM connection;

DROP VIEW IF EXISTS everreal_users;
CREATE VIEW everreal_users AS
SELECT c.name AS connection, s.snapshot_at, s.fetched_at, s.user_id, s.email,
       s.first_name, s.last_name, s.is_active, s.is_tenant, s.terms_accepted,
       s.language, s.company_id, s.company_name, s.partner_id, s.partner_name,
       s.partner_subdomain, s.scopes, s.raw, s.connection_id
FROM everreal_snapshot s JOIN connection c ON c.id = s.connection_id;

DROP VIEW IF EXISTS everreal_companies;
CREATE VIEW everreal_companies AS
SELECT c.name AS connection, co.snapshot_at, co.company_id, co.name, co.is_default,
       co.connection_id
FROM everreal_company co JOIN connection c ON c.id = co.connection_id;

DROP VIEW IF EXISTS estateguru_portfolios;
CREATE VIEW estateguru_portfolios AS
SELECT c.name AS connection, s.snapshot_at, s.fetched_at, s.currency, s.cash_cents,
       s.investments, s.investment_amount_cents, s.market_value_cents,
       s.principal_left_cents, s.profit_cents, s.realized_income_cents, s.raw,
       s.connection_id
FROM estateguru_snapshot s JOIN connection c ON c.id = s.connection_id;

DROP VIEW IF EXISTS estateguru_investments;
CREATE VIEW estateguru_investments AS
SELECT c.name AS connection, i.snapshot_at, i.loan_id, i.name, i.quantity,
       i.investment_amount_cents, i.market_value_cents, i.principal_left_cents,
       i.profit_cents, i.realized_income_cents, i.change_cents, i.resource_path,
       i.position, i.connection_id
FROM estateguru_investment i JOIN connection c ON c.id = i.connection_id;

-- latest_*: the newest snapshot per connection, with exactly the columns of
-- the view they filter. They start from connection (a handful of rows) and,
-- for each, seek the newest snapshot_at in the primary key and then the rows
-- of that snapshot: the cost is that of one snapshot, however long the
-- history grows. CROSS JOIN is SQLite's way to pin that join order; without
-- it the planner may walk every snapshot ever taken.
DROP VIEW IF EXISTS latest_everreal_users;
CREATE VIEW latest_everreal_users AS
SELECT u.* FROM connection latest CROSS JOIN everreal_users u
WHERE u.connection_id = latest.id
  AND u.snapshot_at = (SELECT max(m.snapshot_at) FROM everreal_snapshot m
                       WHERE m.connection_id = latest.id);

DROP VIEW IF EXISTS latest_everreal_companies;
CREATE VIEW latest_everreal_companies AS
SELECT co.* FROM connection latest CROSS JOIN everreal_companies co
WHERE co.connection_id = latest.id
  AND co.snapshot_at = (SELECT max(m.snapshot_at) FROM everreal_snapshot m
                        WHERE m.connection_id = latest.id);

DROP VIEW IF EXISTS latest_estateguru_portfolios;
CREATE VIEW latest_estateguru_portfolios AS
SELECT p.* FROM connection latest CROSS JOIN estateguru_portfolios p
WHERE p.connection_id = latest.id
  AND p.snapshot_at = (SELECT max(m.snapshot_at) FROM estateguru_snapshot m
                       WHERE m.connection_id = latest.id);

DROP VIEW IF EXISTS latest_estateguru_investments;
CREATE VIEW latest_estateguru_investments AS
SELECT i.* FROM connection latest CROSS JOIN estateguru_investments i
WHERE i.connection_id = latest.id
  AND i.snapshot_at = (SELECT max(m.snapshot_at) FROM estateguru_snapshot m
                       WHERE m.connection_id = latest.id);

DROP VIEW IF EXISTS sync_runs;
CREATE VIEW sync_runs AS
SELECT id, trigger, started_at, finished_at, status, connections_ok, connections_failed,
       connections_skipped, connections_warned
FROM sync_run;

DROP VIEW IF EXISTS sync_results;
CREATE VIEW sync_results AS
SELECT r.run_id, c.name AS connection, r.status, r.error, r.started_at, r.finished_at
FROM sync_result r JOIN connection c ON c.id = r.connection_id;

-- Reports: the questions people ask first, answered once here.

-- estateguru_portfolio_history: one row per connection and snapshot, with
-- the portfolio's value (cash + market value) and every amount's change
-- since that connection's previous snapshot (NULL on its first). A period
-- with no snapshot (the sync failed all day) is skipped: previous_snapshot_at
-- says which snapshot a change is measured against. The window is
-- partitioned by connection_id and name (the same partitions: names are
-- unique) so that SQLite pushes a filter on either column down into the
-- view: one connection's history then seeks its snapshots instead of
-- computing every connection's (schema 4; store/history_plan_test.go).
DROP VIEW IF EXISTS estateguru_portfolio_history;
CREATE VIEW estateguru_portfolio_history AS
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

-- estateguru_investment_changes: the investments that appeared in or
-- disappeared from each connection's newest snapshot, compared with the one
-- before it. An investment is known by its loan_id (or, lacking one, its
-- resource_path, then its name). A connection with a single snapshot has
-- nothing to compare, so no rows. The anti-joins (LEFT JOIN ... IS NULL)
-- make SQLite build a temporary index on each side's keys, so the cost is
-- about linear in the portfolio size with no index to maintain on every
-- write; NOT IN over row values looked equivalent and was quadratic (38 s
-- for 20,000 investments instead of 0.15 s).
DROP VIEW IF EXISTS estateguru_investment_changes;
CREATE VIEW estateguru_investment_changes AS
WITH pair AS (
    SELECT c.id AS connection_id, c.name AS connection,
           (SELECT s.snapshot_at FROM estateguru_snapshot s WHERE s.connection_id = c.id
            ORDER BY s.snapshot_at DESC LIMIT 1 OFFSET 1) AS from_at,
           (SELECT max(s.snapshot_at) FROM estateguru_snapshot s WHERE s.connection_id = c.id) AS to_at
    FROM connection c
),
newer AS (
    SELECT p.connection, p.from_at, p.to_at, i.*,
           coalesce(i.loan_id, i.resource_path, i.name, '#' || i.position) AS k
    FROM pair p CROSS JOIN estateguru_investment i
    WHERE p.from_at IS NOT NULL AND i.connection_id = p.connection_id AND i.snapshot_at = p.to_at
),
older AS (
    SELECT p.connection, p.from_at, p.to_at, i.*,
           coalesce(i.loan_id, i.resource_path, i.name, '#' || i.position) AS k
    FROM pair p CROSS JOIN estateguru_investment i
    WHERE p.from_at IS NOT NULL AND i.connection_id = p.connection_id AND i.snapshot_at = p.from_at
)
SELECT n.connection, 'appeared' AS change, n.from_at AS from_snapshot_at, n.to_at AS to_snapshot_at,
       n.loan_id, n.name, n.quantity, n.investment_amount_cents, n.market_value_cents,
       n.principal_left_cents, n.profit_cents, n.resource_path, n.connection_id
FROM newer n LEFT JOIN older o ON o.connection_id = n.connection_id AND o.k = n.k
WHERE o.k IS NULL
UNION ALL
SELECT o.connection, 'disappeared', o.from_at, o.to_at,
       o.loan_id, o.name, o.quantity, o.investment_amount_cents, o.market_value_cents,
       o.principal_left_cents, o.profit_cents, o.resource_path, o.connection_id
FROM older o LEFT JOIN newer n ON n.connection_id = o.connection_id AND n.k = o.k
WHERE n.k IS NULL;

-- everreal_users_by_company: one row per company and user in each
-- connection's newest snapshot: who can act in which company today.
DROP VIEW IF EXISTS everreal_users_by_company;
CREATE VIEW everreal_users_by_company AS
SELECT co.company_id, co.name AS company_name, latest.name AS connection, s.user_id, s.email,
       s.first_name, s.last_name, s.is_active, co.is_default,
       co.company_id IS s.company_id AS is_current, s.snapshot_at, s.connection_id
FROM connection latest
CROSS JOIN everreal_snapshot s
CROSS JOIN everreal_company co
WHERE s.connection_id = latest.id
  AND s.snapshot_at = (SELECT max(m.snapshot_at) FROM everreal_snapshot m
                       WHERE m.connection_id = latest.id)
  AND co.connection_id = s.connection_id AND co.snapshot_at = s.snapshot_at;

-- everreal_scope_changes: the access audit. One row per scope added to or
-- removed from a connection's user between one snapshot and the one before
-- it, over the whole history. The first snapshot of a connection has
-- nothing before it, so no rows (its scopes are in everreal_users).
DROP VIEW IF EXISTS everreal_scope_changes;
CREATE VIEW everreal_scope_changes AS
WITH s AS (
    SELECT connection_id, snapshot_at, user_id, email, scopes,
           lag(snapshot_at) OVER w AS previous_snapshot_at,
           lag(scopes) OVER w AS previous_scopes
    FROM everreal_snapshot
    WINDOW w AS (PARTITION BY connection_id ORDER BY snapshot_at)
)
SELECT c.name AS connection, s.snapshot_at, s.previous_snapshot_at, 'added' AS change,
       j.value AS scope, s.user_id, s.email, s.connection_id
FROM s JOIN connection c ON c.id = s.connection_id, json_each(s.scopes) j
WHERE s.previous_snapshot_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM json_each(s.previous_scopes) p WHERE p.value = j.value)
UNION ALL
SELECT c.name, s.snapshot_at, s.previous_snapshot_at, 'removed',
       j.value, s.user_id, s.email, s.connection_id
FROM s JOIN connection c ON c.id = s.connection_id, json_each(s.previous_scopes) j
WHERE s.previous_snapshot_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM json_each(s.scopes) p WHERE p.value = j.value);
