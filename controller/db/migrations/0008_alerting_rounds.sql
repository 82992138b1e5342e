-- Alerting: rounds nobody ran, incidents closed by disabling, recoveries held by maintenance,
-- notifications dropped unsent, and an ordered claim of the outbox.

-- Since when the monitor's grid rounds are the scheduler's: the first due time it planned for
-- the current grid (it plans anew after a change of interval or status), or, until planned, the
-- change itself. The alerter counts a grid round nobody reported on as missed only from then on,
-- so a monitor re-enabled after a month gets no month of `expired` rows, nor a new monitor rows
-- for the time before its first round. Rows existing before this migration start now.
ALTER TABLE monitors ADD COLUMN rounds_since timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION monitors_rounds_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.next_due_at IS NULL AND NEW.next_due_at IS NOT NULL THEN
        NEW.rounds_since := NEW.next_due_at;
    ELSIF NEW.check_interval IS DISTINCT FROM OLD.check_interval
       OR (NEW.status = 'disabled') IS DISTINCT FROM (OLD.status = 'disabled') THEN
        NEW.rounds_since := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER monitors_rounds_since BEFORE UPDATE OF status, check_interval, next_due_at
    ON monitors FOR EACH ROW EXECUTE FUNCTION monitors_rounds_since();

-- A new monitor, and one whose status changed, is queued for the alerter whoever wrote it (the
-- monitor API, the AlertSite API, an operator's SQL): it then watches the monitor's rounds, closes
-- the incident of a disabled one, and sends what maintenance held back as soon as it ends.
CREATE FUNCTION monitors_alert_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_queue (monitor_id, due_at) VALUES (NEW.id, now())
    ON CONFLICT (monitor_id) DO UPDATE SET due_at = EXCLUDED.due_at
    WHERE EXCLUDED.due_at < alert_queue.due_at;
    RETURN NULL;
END
$$;
CREATE TRIGGER monitors_alert_queue_insert AFTER INSERT ON monitors
    FOR EACH ROW EXECUTE FUNCTION monitors_alert_queue();
CREATE TRIGGER monitors_alert_queue_status AFTER UPDATE OF status ON monitors
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION monitors_alert_queue();

-- end_reason: why an incident ended other than by recovering (`monitoring disabled`); NULL when it
-- recovered. recovery_held: it was notified as down and recovered while notifications were held
-- (maintenance); its recovery goes out when they no longer are.
ALTER TABLE incidents ADD COLUMN end_reason text;
ALTER TABLE incidents ADD COLUMN recovery_held boolean NOT NULL DEFAULT false;
CREATE INDEX incidents_recovery_held ON incidents (monitor_id) WHERE recovery_held;

-- `dropped`: not sent on purpose (a reminder whose incident closed first); last_error says why.
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_status_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_status_check
    CHECK (status IN ('pending', 'sent', 'failed', 'dropped'));
ALTER TABLE alert_history DROP CONSTRAINT alert_history_status_check;
ALTER TABLE alert_history ADD CONSTRAINT alert_history_status_check
    CHECK (status IN ('sent', 'failed', 'dropped'));

-- The claim takes a notification only when no older one to the same recipient about the same
-- monitor is still pending (a recovery never overtakes its down notice).
CREATE INDEX notification_outbox_pending_recipient
    ON notification_outbox (monitor_id, channel, target, id) WHERE status = 'pending';
