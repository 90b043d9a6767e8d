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
    updated_at         TEXT NOT NULL
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
    pid                INTEGER -- the process running it, to find runs a crash left open
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

CREATE INDEX IF NOT EXISTS sync_run_unfinished ON sync_run (id) WHERE finished_at IS NULL;

-- The reporting surface.

DROP VIEW IF EXISTS connections;
CREATE VIEW connections AS
SELECT name, provider, base_url, state, access_expires_at, refresh_expires_at,
       last_success_at, last_error, created_at, id AS connection_id
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

-- latest_*: the newest snapshot per connection. The subquery walks the
-- primary key (connection_id, snapshot_at), so these stay fast however long
-- the history grows.
DROP VIEW IF EXISTS latest_everreal_users;
CREATE VIEW latest_everreal_users AS
SELECT * FROM everreal_users
WHERE (connection_id, snapshot_at) IN
      (SELECT connection_id, max(snapshot_at) FROM everreal_snapshot GROUP BY connection_id);

DROP VIEW IF EXISTS latest_estateguru_portfolios;
CREATE VIEW latest_estateguru_portfolios AS
SELECT * FROM estateguru_portfolios
WHERE (connection_id, snapshot_at) IN
      (SELECT connection_id, max(snapshot_at) FROM estateguru_snapshot GROUP BY connection_id);

DROP VIEW IF EXISTS latest_estateguru_investments;
CREATE VIEW latest_estateguru_investments AS
SELECT * FROM estateguru_investments
WHERE (connection_id, snapshot_at) IN
      (SELECT connection_id, max(snapshot_at) FROM estateguru_snapshot GROUP BY connection_id);

DROP VIEW IF EXISTS sync_runs;
CREATE VIEW sync_runs AS
SELECT id, trigger, started_at, finished_at, status, connections_ok, connections_failed
FROM sync_run;

DROP VIEW IF EXISTS sync_results;
CREATE VIEW sync_results AS
SELECT r.run_id, c.name AS connection, r.status, r.error, r.started_at, r.finished_at
FROM sync_result r JOIN connection c ON c.id = r.connection_id;
