-- PostgreSQL version 3: what SQLite's schema version 3 (operations, issue
-- 11) added to schema.sql, with the same names, columns and answers.
--
--   connection.state_since          when state last changed (NULL: not known)
--   sync_run.connections_skipped    not attempted: they need re-login
--   sync_run.connections_warned     refresh token dies within SYNCER_REFRESH_WARN
--   notify_state                    what the notifications last announced
--   sync_result_by_connection       a connection's last success and failures since
--   views connections, sync_runs    the new columns, in SQLite's order

ALTER TABLE connection ADD COLUMN state_since rfc3339;
-- As SQLite's migration: a connection not active began its state at its
-- last update, as far as anyone can tell now.
UPDATE connection SET state_since = updated_at WHERE state <> 'active';

ALTER TABLE sync_run
    ADD COLUMN connections_skipped bigint NOT NULL DEFAULT 0,
    ADD COLUMN connections_warned  bigint NOT NULL DEFAULT 0;

-- condition is ok, failing or reauth_required; refresh_warned_for is the
-- refresh token expiry already warned about. Shared by every instance, so
-- a transition is announced once whichever instance sees it first.
CREATE TABLE notify_state (
    connection_id      bigint PRIMARY KEY REFERENCES connection (id),
    condition          text COLLATE "C" NOT NULL DEFAULT 'ok',
    refresh_warned_for rfc3339,
    updated_at         rfc3339 NOT NULL
);

CREATE INDEX sync_result_by_connection ON sync_result (connection_id, status, run_id);

-- CREATE OR REPLACE VIEW may only add columns at the end; sync_runs has
-- PostgreSQL's own instance column there, and keeps it, after SQLite's.
DROP VIEW connections;
CREATE VIEW connections AS
SELECT name, provider, base_url, state, access_expires_at, refresh_expires_at,
       last_success_at, last_error, created_at, id AS connection_id, state_since
FROM connection;

DROP VIEW sync_runs;
CREATE VIEW sync_runs AS
SELECT id, trigger, started_at, finished_at, status, connections_ok, connections_failed,
       connections_skipped, connections_warned, instance
FROM sync_run;
