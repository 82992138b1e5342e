-- A round trip's first minutes (issue 66; controller.roundtrips.rules).

-- Each round-trip monitor's latest round that went out (jobs published, waiting for a slot or
-- kept as later logins): its scheduled time (as its jobs and results carry it), when it is over
-- at the latest, and its countries with their job ids, in one order. A check-now while it is in
-- flight joins it (controller.roundtrips.rounds_store).
CREATE TABLE roundtrip_rounds (
    monitor_id      bigint PRIMARY KEY REFERENCES monitors (id) ON DELETE CASCADE,
    scheduled_at    timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    countries       text[] NOT NULL,
    job_ids         text[] NOT NULL
);

-- Whether a round sent to `countries`, of which `answered` have a result of it or of a later
-- round, is in flight `at`: before it ends, and some country has no result yet.
-- Twin: controller.roundtrips.rules.in_flight.
CREATE FUNCTION roundtrip_in_flight(
    countries text[], answered text[], ends_at timestamptz, at timestamptz
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(at < ends_at AND NOT (countries <@ coalesce(answered, '{}')), false)
$$;

-- Whether a round trip's result shows its message arrived: `up` (a look's too), or placed in
-- a spam folder, or late. Twin: controller.roundtrips.rules.arrived.
CREATE FUNCTION roundtrip_arrived(status text, error_kind text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(status = 'up' OR error_kind IN ('spam', 'slow_delivery'), false)
$$;

-- When the monitor's mailbox last changed (NULL: not since it was made). The caps read results
-- that showed the message arriving ahead of the record only from rounds after it: a result of
-- the old mailbox confirms nothing of the new one.
ALTER TABLE roundtrip_delivery ADD COLUMN mailbox_at timestamptz;

-- A new mailbox has shown nothing yet: its record starts over, from now. Any other write (the
-- same mailbox spelt another way, a secret sealed anew, the send leg, folders) keeps it.
CREATE OR REPLACE FUNCTION monitors_roundtrip_mailbox_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.type = 'roundtrip'
       AND roundtrip_mailbox(NEW.config) IS DISTINCT FROM roundtrip_mailbox(OLD.config) THEN
        INSERT INTO roundtrip_delivery (monitor_id, mailbox_at) VALUES (NEW.id, now())
        ON CONFLICT (monitor_id) DO UPDATE
            SET confirmed_at = NULL, not_delivered = 0, notified = false, mailbox_at = now();
    END IF;
    RETURN NULL;
END
$$;

-- A round trip whose settings change (its config, its send server) has no round in flight to
-- join: a check-now then checks the new settings.
CREATE FUNCTION monitors_roundtrip_settings_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM roundtrip_rounds WHERE monitor_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER monitors_roundtrip_settings_changed AFTER UPDATE OF config, hostname, port
    ON monitors FOR EACH ROW
    WHEN (NEW.type = 'roundtrip'
        AND (OLD.config, OLD.hostname, OLD.port) IS DISTINCT FROM
            (NEW.config, NEW.hostname, NEW.port))
    EXECUTE FUNCTION monitors_roundtrip_settings_changed();
