-- PostgreSQL version 4: the security work's vault schema 2 (issue 12,
-- finding 1). The provider base URL the tokens were issued by is kept
-- beside them, in schema vault, which the reporting role cannot reach: a
-- sync sends the tokens only there, and only while connection.base_url in
-- public says the same. Sealed tokens carry it in their AES-GCM additional
-- data (prefix gcm2:); gcm1 values are re-sealed at the first start with
-- the key (pgstore.checkKey).
--
-- Existing tokens take their connection's current base URL, once, here;
-- from now on only a re-connect changes it.

ALTER TABLE vault.token ADD COLUMN base_url text COLLATE "C" NOT NULL DEFAULT '';
UPDATE vault.token t SET base_url = c.base_url FROM public.connection c WHERE c.id = t.connection_id;
