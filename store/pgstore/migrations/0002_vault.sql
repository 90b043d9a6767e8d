-- The vault: refresh and access tokens, apart from the reporting schema so
-- that a reporting role, given USAGE on public only, can read every view
-- and no token (docs/postgres.md has the grants). Token columns are sealed
-- with AES-256-GCM unless the operator opted out
-- (SYNCER_DATABASE_PLAINTEXT_TOKENS).

CREATE SCHEMA vault;
REVOKE ALL ON SCHEMA vault FROM PUBLIC;

CREATE TABLE vault.token (
    connection_id      bigint PRIMARY KEY REFERENCES public.connection (id),
    refresh_token      text NOT NULL,
    access_token       text,
    access_expires_at  rfc3339,
    refresh_expires_at rfc3339,
    generation         bigint NOT NULL DEFAULT 1, -- +1 on every save; saves compare it
    updated_at         rfc3339 NOT NULL,
    updated_by         text -- hostname:pid
);

CREATE TABLE vault.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
