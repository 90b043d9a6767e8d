-- The reporting role's grants (docs/postgres.md). Run once, after syncer's
-- first start migrated the database, as the role that owns syncer's tables
-- (the user of SYNCER_DATABASE_URL), with the reporting role created before:
--   CREATE ROLE syncer_reporting LOGIN PASSWORD '...';
-- It reads every table and view of schema public (no secret is there) and
-- nothing of schema vault, whose USAGE syncer's migration revoked from
-- PUBLIC. The default privileges grant the same on views a later migration
-- re-creates.
GRANT USAGE ON SCHEMA public TO syncer_reporting;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO syncer_reporting;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO syncer_reporting;
