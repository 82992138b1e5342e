-- Heartbeat monitors (issue 83): a monitor of type `heartbeat` is judged by the controller from
-- the mail its receiving address took (`arrivals`), never scheduled as rounds: it has no
-- `monitor_due` row. Its rule and address are its config (shared.messages.HeartbeatConfig).
ALTER TABLE monitors DROP CONSTRAINT monitors_type_check;
ALTER TABLE monitors ADD CONSTRAINT monitors_type_check
    CHECK (type IN ('smtp', 'imap', 'pop3', 'roundtrip', 'heartbeat'));
-- One monitor an address: the receivers' RECEIVERS bucket is keyed by it.
CREATE UNIQUE INDEX monitors_heartbeat_address ON monitors ((config ->> 'localPart'))
    WHERE type = 'heartbeat';

CREATE OR REPLACE FUNCTION monitors_due_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.type <> 'heartbeat' THEN
            INSERT INTO monitor_due (monitor_id, next_due_at) VALUES (NEW.id, NEW.next_due_at);
        END IF;
    ELSIF pg_trigger_depth() = 1 THEN
        UPDATE monitor_due SET next_due_at = NEW.next_due_at
        WHERE monitor_id = NEW.id AND next_due_at IS DISTINCT FROM NEW.next_due_at;
    END IF;
    RETURN NULL;
END
$$;

-- When the heartbeat judge (controller/arrivals/watch.py) looks at a monitor next: the rule's
-- `due_at`, or at once when an arrival was stored for it. `watched_from`: since when its mail
-- is expected (created, or enabled again), on the judge's clock.
CREATE TABLE heartbeat_watch (
    monitor_id   bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    watched_from timestamptz NOT NULL,
    due_at       timestamptz,
    leased_until timestamptz
);
CREATE INDEX heartbeat_watch_due ON heartbeat_watch (due_at);

-- Nor are they queued for the round evaluator: the heartbeat judge looks at them.
DROP TRIGGER monitors_alert_queue_insert ON monitors;
CREATE TRIGGER monitors_alert_queue_insert AFTER INSERT ON monitors FOR EACH ROW
    WHEN (NEW.type <> 'heartbeat') EXECUTE FUNCTION monitors_alert_queue();
DROP TRIGGER monitors_alert_queue_status ON monitors;
CREATE TRIGGER monitors_alert_queue_status AFTER UPDATE OF status ON monitors FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.type <> 'heartbeat')
    EXECUTE FUNCTION monitors_alert_queue();
