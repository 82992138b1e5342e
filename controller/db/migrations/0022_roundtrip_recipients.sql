-- Round trips mail only their own mailbox (controller.roundtrips.rules).

-- A round-trip monitor's delivery record: `confirmed_at`, the latest round that showed the
-- message arriving (NULL: none yet, so its sends are capped); `not_delivered`, rounds in a row
-- since that were `not_delivered` (from `BACK_OFF_AFTER` of them: a trickle);
-- `notified`, the owners were told of the back-off. No row: unconfirmed.
CREATE TABLE roundtrip_delivery (
    monitor_id      bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    confirmed_at    timestamptz,
    not_delivered   integer NOT NULL DEFAULT 0 CHECK (not_delivered >= 0),
    notified        boolean NOT NULL DEFAULT false
);

-- A new recipient or mailbox (`to`, `receive`) has shown nothing yet: the record starts over.
CREATE FUNCTION monitors_roundtrip_mailbox_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.config->'to' IS DISTINCT FROM OLD.config->'to'
       OR NEW.config->'receive' IS DISTINCT FROM OLD.config->'receive' THEN
        DELETE FROM roundtrip_delivery WHERE monitor_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER monitors_roundtrip_mailbox_changed AFTER UPDATE OF config ON monitors
    FOR EACH ROW EXECUTE FUNCTION monitors_roundtrip_mailbox_changed();

-- One row per round-trip message the scheduler sent: its monitor (no foreign key: a deleted
-- monitor's messages still count against their domain) and recipient domain, for the monitor's
-- cap per hour and ROUNDTRIP_MAILS_PER_DOMAIN_PER_MINUTE over all organizations and replicas;
-- rows older than an hour are deleted as new ones come.
CREATE TABLE mail_sends (
    monitor_id  bigint NOT NULL,
    domain      text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX mail_sends_domain_at ON mail_sends (domain, at);
CREATE INDEX mail_sends_monitor_at ON mail_sends (monitor_id, at);
CREATE INDEX mail_sends_at ON mail_sends (at);

-- `delivery`: the owners' one notice that a round trip's messages stopped arriving and its
-- sending was slowed (no incident of its own).
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_kind_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_kind_check
    CHECK (kind IN ('down', 'reminder', 'recovered', 'finding', 'cert_expiry', 'credentials',
                    'held_back', 'login_cap', 'delivery'));
