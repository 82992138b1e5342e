-- The monitors' triggers take the write's instant, `updated_at` (the writer's clock, as
-- controller.monitors.store writes it on insert and update), not the database's clock: a
-- monitor made or changed is queued for judging, starts counting its rounds and has its
-- round trip's mailbox changed at the instant its writer gave (issue 79).
CREATE OR REPLACE FUNCTION monitors_alert_queue() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO alert_queue (monitor_id, due_at) VALUES (NEW.id, NEW.updated_at)
    ON CONFLICT (monitor_id) DO UPDATE SET due_at = EXCLUDED.due_at
    WHERE EXCLUDED.due_at < alert_queue.due_at;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION monitors_rounds_since() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.rounds_since := NEW.updated_at;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION monitors_roundtrip_mailbox_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.type = 'roundtrip'
       AND roundtrip_mailbox(NEW.config) IS DISTINCT FROM roundtrip_mailbox(OLD.config) THEN
        INSERT INTO roundtrip_delivery (monitor_id, mailbox_at) VALUES (NEW.id, NEW.updated_at)
        ON CONFLICT (monitor_id) DO UPDATE
            SET confirmed_at = NULL, not_delivered = 0, notified = false,
                mailbox_at = NEW.updated_at;
    END IF;
    RETURN NULL;
END
$$;

-- Unused since 0136 (flow_incidents_end_gone(org, at) ends them at the caller's instant).
DROP FUNCTION flow_incidents_end_gone(bigint);
