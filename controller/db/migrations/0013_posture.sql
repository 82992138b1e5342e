-- Mail security posture (issue 15): what each country sees of a monitored server, what it
-- normally sees, and the findings raised when that goes wrong.

-- What the server advertised (SMTP EHLO, IMAP CAPABILITY, POP3 CAPA) as the agent reported it:
-- the last list, and the one sent in the clear before a STARTTLS upgrade. JSON arrays of text.
ALTER TABLE check_results ADD COLUMN capabilities jsonb;
ALTER TABLE check_results ADD COLUMN capabilities_before_tls jsonb;

-- Per monitor: how far posture has read its judged rounds, and the open findings' drift streaks
-- (finding key "code|country" → rounds in a row it held).
CREATE TABLE posture_state (
    monitor_id      bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    last_round_at   timestamptz,
    streaks         jsonb NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Per monitor and country: the facts it normally sees (starttls, auth, tls_version, cert_sha256).
CREATE TABLE posture_baselines (
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    country         text NOT NULL,
    facts           jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (monitor_id, country)
);

-- Findings with their history: a row per appearance, `cleared_at` set when it no longer holds.
-- country '' is the monitor as a whole.
CREATE TABLE posture_findings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    code            text NOT NULL,
    country         text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    detail          text NOT NULL,
    appeared_at     timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    cleared_at      timestamptz
);
CREATE UNIQUE INDEX posture_findings_one_open ON posture_findings (monitor_id, code, country)
    WHERE cleared_at IS NULL;
CREATE INDEX posture_findings_monitor ON posture_findings (monitor_id, appeared_at DESC, id DESC);

-- Changes every country saw alike (a renewed certificate): recorded, never alarmed.
CREATE TABLE posture_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    fact            text NOT NULL,
    before          jsonb NOT NULL,
    after           jsonb NOT NULL,
    countries       text[] NOT NULL,
    at              timestamptz NOT NULL
);
CREATE INDEX posture_changes_monitor ON posture_changes (monitor_id, at DESC, id DESC);

-- Certificate expiry notices queued, one per threshold per certificate (a notice due during
-- maintenance is queued at the first round after it).
CREATE TABLE cert_expiry_notices (
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    cert_sha256     text NOT NULL,
    threshold_days  integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (monitor_id, cert_sha256, threshold_days)
);

-- Days before expiry at which a notice goes out: per organization, per monitor (NULL inherits;
-- the built-in default is {21,7}).
ALTER TABLE organization_alert_settings ADD COLUMN cert_expiry_days integer[]
    CHECK (cert_expiry_days IS NULL OR (cardinality(cert_expiry_days) <= 5
        AND 0 <= ALL(cert_expiry_days) AND 365 >= ALL(cert_expiry_days)));
ALTER TABLE monitor_alert_settings ADD COLUMN cert_expiry_days integer[]
    CHECK (cert_expiry_days IS NULL OR (cardinality(cert_expiry_days) <= 5
        AND 0 <= ALL(cert_expiry_days) AND 365 >= ALL(cert_expiry_days)));

-- Posture notifications have kinds of their own.
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_kind_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_kind_check
    CHECK (kind IN ('down', 'reminder', 'recovered', 'finding', 'cert_expiry'));
