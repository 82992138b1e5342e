-- `monitors.next_due_at`, the previous release's copy of the due times (migration 0128), is kept
-- only while `due_mirrored()`, and then only for the monitors moved since. When `seeded_from` is
-- cleared (a rollback's `JOB_IDS_SEEDED=false`, an older controller seen), every monitor's copy
-- is brought up to date from `monitor_due` at once: a previous release's scheduler and alerter
-- then read the due time of a monitor not moved since it was set (a daily monitor's copy would
-- be a day, or weeks, old) as they read the others.
CREATE FUNCTION due_copied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE monitors m SET next_due_at = d.next_due_at
    FROM monitor_due d
    WHERE d.monitor_id = m.id AND m.next_due_at IS DISTINCT FROM d.next_due_at;
    RETURN NULL;
END
$$;
CREATE TRIGGER job_id_scheme_due_copied AFTER UPDATE OF seeded_from ON job_id_scheme
    FOR EACH ROW WHEN (OLD.seeded_from IS NOT NULL AND NEW.seeded_from IS NULL)
    EXECUTE FUNCTION due_copied();

-- A copy written by `due_copied` is not copied back into `monitor_due`: a scheduler's move that
-- commits while the copy runs must not be undone by the due time the copy read before it.
CREATE OR REPLACE FUNCTION monitors_due_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO monitor_due (monitor_id, next_due_at) VALUES (NEW.id, NEW.next_due_at);
    ELSIF pg_trigger_depth() = 1 THEN
        UPDATE monitor_due SET next_due_at = NEW.next_due_at
        WHERE monitor_id = NEW.id AND next_due_at IS DISTINCT FROM NEW.next_due_at;
    END IF;
    RETURN NULL;
END
$$;

-- A previous release calls `scheduler_moved` (migration 0118's, redefined by 0128) too, and
-- claims by `monitors.next_due_at`: its own moves are kept there whatever `seeded_from` says
-- (it may still be set from that release: `migrate` runs before the first controller of this
-- one, whose look clears it; that release's watch may even set it again). This release's
-- sessions end in its mark (`controller/jobs/scheme.py` `SEEDED_MARK`); any other session's
-- move, of an older release, a controller with `JOB_IDS_SEEDED=false` or one whose URL names
-- its sessions, is kept in both.
CREATE OR REPLACE FUNCTION due_mirrored() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT seeded_from IS NULL FROM job_id_scheme), true)
        OR NOT (current_setting('application_name') LIKE 'mailprobe controller % ids3')
$$;
