-- The run of missed rounds of a monitor (controller.alerting.no_data): how many in a row and the first
-- one's scheduled time. An open incident whose rounds have all been missed for
-- INCIDENT_NO_DATA_CLOSE_MINUTES (and at least 3 rounds) is closed for lack of data.
ALTER TABLE monitor_alert_state ADD COLUMN missed_rounds integer NOT NULL DEFAULT 0;
ALTER TABLE monitor_alert_state ADD COLUMN missed_since timestamptz;

-- `no_data`: an incident closed for lack of data, told to those told of the outage (beside
-- every other kind the outbox holds: `login_cap`, and `delivery` of round trips).
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_kind_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_kind_check
    CHECK (kind IN ('down', 'reminder', 'recovered', 'finding', 'cert_expiry', 'credentials',
                    'held_back', 'login_cap', 'delivery', 'no_data'));
