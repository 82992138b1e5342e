-- Confirmation rounds: a failing round is checked again at once, from all the monitor's
-- countries, instead of waiting for the next scheduled round.

-- On by default; the monitor's NULL inherits the organization's value.
ALTER TABLE organization_alert_settings ADD COLUMN confirm_failures boolean NOT NULL DEFAULT true;
ALTER TABLE monitor_alert_settings ADD COLUMN confirm_failures boolean;

-- One row per failing round the alerter asked to confirm (`after_round`: its scheduled time, so
-- an evaluation repeated by another replica asks once). The scheduler sends it and sets
-- `sent_at`; rows of the last minute count against CONFIRM_ROUNDS_PER_MINUTE, older ones are
-- deleted as new ones come.
CREATE TABLE confirmation_rounds (
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    after_round     timestamptz NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    PRIMARY KEY (monitor_id, after_round)
);
CREATE INDEX confirmation_rounds_requested ON confirmation_rounds (requested_at);
CREATE INDEX confirmation_rounds_pending ON confirmation_rounds (requested_at)
    WHERE sent_at IS NULL;
