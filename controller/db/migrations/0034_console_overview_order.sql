-- The console's overview at 100,000 monitors in one organization (issue 24).
-- It lists monitors by name (lower(name), id), a page at a time: with this index a page is read
-- in order and stops at its LIMIT.
CREATE INDEX monitors_org_name ON monitors (organization_id, lower(name), id);
-- Its search is a substring of the name or the hostname, any case (ILIKE '%term%'): trigram
-- indexes answer it without reading every monitor. pg_trgm ships with PostgreSQL and is a
-- trusted extension (13+): the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX monitors_name_trgm ON monitors USING gin (name gin_trgm_ops);
CREATE INDEX monitors_hostname_trgm ON monitors USING gin (hostname gin_trgm_ops);
