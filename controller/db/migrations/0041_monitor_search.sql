-- A monitor's search text (its name and hostname, which the API and the console search by
-- substring, any case) in a table of its own, with the trigram indexes of migration 0034 moved
-- here (issue 24). The scheduler moves `monitors.next_due_at` every round, an indexed column,
-- so no such update is HOT and each writes an entry into every index of `monitors`: with the
-- trigram indexes there, every round re-inserted some sixty trigrams of an unchanged name and
-- hostname (a third of the update's cost), and now and then merged the GIN pending list inside
-- the scheduler's transaction. A row here is written when its monitor is created or renamed,
-- and goes with it. Both are kept lower-cased and compared byte by byte (collation "C"): a
-- search is `LIKE lower(term)`, which costs a tenth of an ILIKE where a scan reads every row,
-- and whose trigram index the planner prices right (an ILIKE through these narrow rows was
-- planned as a scan of them all, 50 ms at 100,000 monitors, against 0.3 ms through the index).
-- A search reads its own organization's rows (`organization_id`, which the API never changes;
-- the triggers follow an operator's SQL too): what another organization holds never makes it
-- longer.
CREATE TABLE monitor_search (
    monitor_id      bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    organization_id bigint NOT NULL,
    name            text COLLATE "C" NOT NULL,
    hostname        text COLLATE "C" NOT NULL
);
INSERT INTO monitor_search (monitor_id, organization_id, name, hostname)
SELECT id, organization_id, lower(name), lower(hostname) FROM monitors;
CREATE INDEX monitor_search_organization ON monitor_search (organization_id);
-- Written straight into the index (no pending list): rows come one at a time and rarely, and
-- a pending list would be read whole by every search (and priced so by the planner) until a
-- vacuum merged it.
CREATE INDEX monitor_search_name_trgm ON monitor_search
    USING gin (name gin_trgm_ops) WITH (fastupdate = off);
CREATE INDEX monitor_search_hostname_trgm ON monitor_search
    USING gin (hostname gin_trgm_ops) WITH (fastupdate = off);
DROP INDEX monitors_name_trgm;
DROP INDEX monitors_hostname_trgm;

-- Kept by triggers, whoever writes `monitors` (the monitor API, the AlertSite API, monitors as
-- code, an operator's SQL). The scheduler's round update sets neither column: no trigger runs.
CREATE FUNCTION monitors_search_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO monitor_search (monitor_id, organization_id, name, hostname)
    VALUES (NEW.id, NEW.organization_id, lower(NEW.name), lower(NEW.hostname))
    ON CONFLICT (monitor_id) DO UPDATE SET organization_id = EXCLUDED.organization_id,
        name = EXCLUDED.name, hostname = EXCLUDED.hostname;
    RETURN NULL;
END
$$;
CREATE TRIGGER monitors_search_created AFTER INSERT ON monitors
    FOR EACH ROW EXECUTE FUNCTION monitors_search_row();
CREATE TRIGGER monitors_search_renamed AFTER UPDATE OF name, hostname, organization_id
    ON monitors FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.hostname IS DISTINCT FROM NEW.hostname
        OR OLD.organization_id IS DISTINCT FROM NEW.organization_id)
    EXECUTE FUNCTION monitors_search_row();
