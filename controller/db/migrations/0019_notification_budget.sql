-- Notification budget (ORG_MAX_NOTIFICATIONS_PER_HOUR, ORG_MAX_SMS_PER_HOUR): what each
-- organization had sent on each channel in the current clock hour (`used`: notifications let
-- through, counted once at their first attempt; `held`: ones dropped past the budget). One row
-- per organization and channel, started over when a new hour begins; the outbox worker reads and
-- writes it under its row lock in the claim's transaction, so replicas share one count.
CREATE TABLE notification_budget (
    organization_id bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms')),
    window_start    timestamptz NOT NULL,
    used            integer NOT NULL DEFAULT 0,
    held            integer NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, channel)
);

-- `held_back`: the organization owners' one notice per hour and channel that its budget was
-- reached (outside the budget, so it always goes out).
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_kind_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_kind_check
    CHECK (kind IN ('down', 'reminder', 'recovered', 'finding', 'cert_expiry', 'credentials',
                    'held_back'));
