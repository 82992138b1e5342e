-- A monitor's next due time in a narrow table of its own (issue 70). The scheduler moves it every
-- round; on `monitors` it is an indexed column (`monitors_due`), so no such update was HOT and
-- each copied the whole row and wrote an entry into each of the table's seven indexes: the
-- largest statement after the ingester's. Here a move is a row of two columns and two indexes.
-- Every move goes through `due_move`; a monitor's row is read with it by
-- `controller/monitors/store.py` `DUE_AT`, the claims by `controller/scheduling/due_store.py`,
-- `scheduler_earliest` and `scheduler_waiting` below.
--
-- `monitors.next_due_at` stays for one release, for a previous release's scheduler and alerter
-- during a rolling upgrade: whatever writes it (that scheduler, the API's clearing on a change
-- of interval or status, an operator's SQL) is copied here by trigger, and `due_move` writes it
-- too while `due_mirrored()`: while `job_id_scheme.seeded_from` is NULL, i.e. until every live
-- controller has run this release for five minutes (migration 0123's look; always under
-- `JOB_IDS_SEEDED=false`). Once set, nothing of this release reads or moves it.
CREATE TABLE monitor_due (
    monitor_id  bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    next_due_at timestamptz
);
INSERT INTO monitor_due (monitor_id, next_due_at) SELECT id, next_due_at FROM monitors;
-- NULL (waiting for a first due time) included: the unplanned claim reads them by the index too.
CREATE INDEX monitor_due_at ON monitor_due (next_due_at);

-- Whether `monitors.next_due_at` is still kept beside this table: while a controller of the
-- previous release may run (see the top).
CREATE FUNCTION due_mirrored() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT seeded_from IS NULL FROM job_id_scheme), true)
$$;

-- Each monitor's next due time moved (NULL: to be planned anew), the one write of due times of
-- this release. The statements here and below find their rows by key (`= ANY` beside the
-- join): a generic plan otherwise hash-joins the whole table for a batch of a few dozen.
CREATE FUNCTION due_move(ids bigint[], due timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE monitor_due d SET next_due_at = u.due_at
    FROM unnest(ids, due) AS u(id, due_at)
    WHERE d.monitor_id = u.id AND d.monitor_id = ANY(ids);
    IF due_mirrored() THEN
        UPDATE monitors m SET next_due_at = u.due_at
        FROM unnest(ids, due) AS u(id, due_at)
        WHERE m.id = u.id AND m.id = ANY(ids) AND m.next_due_at IS DISTINCT FROM u.due_at;
    END IF;
END $$;

-- Since when a monitor's grid rounds are the scheduler's (migration 0008): the first due time
-- planned for its current grid, here where due times are moved; a change of interval or
-- enablement stays on `monitors` (its trigger below, without the due time's branch).
CREATE FUNCTION monitor_due_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE monitors SET rounds_since = NEW.next_due_at WHERE id = NEW.monitor_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER monitor_due_first AFTER UPDATE OF next_due_at ON monitor_due
    FOR EACH ROW WHEN (OLD.next_due_at IS NULL AND NEW.next_due_at IS NOT NULL)
    EXECUTE FUNCTION monitor_due_first();

CREATE OR REPLACE FUNCTION monitors_rounds_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.rounds_since := now();
    RETURN NEW;
END
$$;
DROP TRIGGER monitors_rounds_since ON monitors;
CREATE TRIGGER monitors_rounds_since BEFORE UPDATE OF status, check_interval ON monitors
    FOR EACH ROW
    WHEN (NEW.check_interval IS DISTINCT FROM OLD.check_interval
        OR (NEW.status = 'disabled') IS DISTINCT FROM (OLD.status = 'disabled'))
    EXECUTE FUNCTION monitors_rounds_since();

-- `monitors.next_due_at` written (a new monitor, the API clearing it, a previous release's
-- scheduler, an operator's SQL): the same due time here. `due_move`'s own copy finds it equal.
CREATE FUNCTION monitors_due_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO monitor_due (monitor_id, next_due_at) VALUES (NEW.id, NEW.next_due_at);
    ELSE
        UPDATE monitor_due SET next_due_at = NEW.next_due_at
        WHERE monitor_id = NEW.id AND next_due_at IS DISTINCT FROM NEW.next_due_at;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER monitors_due_created AFTER INSERT ON monitors
    FOR EACH ROW EXECUTE FUNCTION monitors_due_row();
CREATE TRIGGER monitors_due_written AFTER UPDATE OF next_due_at ON monitors
    FOR EACH ROW EXECUTE FUNCTION monitors_due_row();

-- Migration 0118's functions on this table (the previous release calls them too). The earliest
-- due time is the first in the index's order whose monitor is not disabled (a `min()` over the
-- join would read every row).
CREATE OR REPLACE FUNCTION scheduler_earliest(skip bigint[]) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT d.next_due_at FROM monitor_due d JOIN monitors m ON m.id = d.monitor_id
         WHERE m.status <> 'disabled' AND d.monitor_id <> ALL(skip) AND d.next_due_at IS NOT NULL
         ORDER BY d.next_due_at LIMIT 1),
        (SELECT min(publish_at) FROM deferred_jobs)
    )
$$;

CREATE OR REPLACE FUNCTION scheduler_waiting(
    skip bigint[], at timestamptz,
    OUT confirmations boolean, OUT deferred boolean, OUT earliest timestamptz,
    OUT unplanned boolean
) LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM confirmation_rounds WHERE sent_at IS NULL),
        EXISTS (SELECT 1 FROM deferred_jobs WHERE publish_at <= at),
        scheduler_earliest(skip),
        EXISTS (SELECT 1 FROM monitor_due d JOIN monitors m ON m.id = d.monitor_id
                WHERE d.next_due_at IS NULL AND m.status <> 'disabled')
$$;

-- The countries a round went to are written only where they changed: a routine round's monitor
-- row is not written at all.
CREATE OR REPLACE FUNCTION scheduler_moved(
    moved bigint[], due timestamptz[], went_to text[], skip bigint[], at timestamptz,
    OUT confirmations boolean, OUT deferred boolean, OUT earliest timestamptz,
    OUT unplanned boolean
) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM due_move(moved, due);
    UPDATE monitors m SET round_countries = u.countries
    FROM (SELECT id, string_to_array(went, ',') AS countries
          FROM unnest(moved, went_to) AS w(id, went) WHERE went IS NOT NULL) AS u
    WHERE m.id = u.id AND m.id = ANY(moved) AND m.round_countries IS DISTINCT FROM u.countries;
    SELECT w.confirmations, w.deferred, w.earliest, w.unplanned
    INTO confirmations, deferred, earliest, unplanned
    FROM scheduler_waiting(skip, at) AS w;
END $$;
