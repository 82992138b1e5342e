-- Logins counted per organization and account, as attempted: one row per credentialed job sent
-- (its organization, the keyed hash of user@host it logs in to, the logins it may make), and
-- what its result said (`logins`: how many reached the server's AUTH/LOGIN/USER-PASS step; NULL
-- while no result came). A job without a result counts as its planned logins until it settles
-- (its expiry plus its timeout: no login can happen later). LOGIN_CAP_PER_ACCOUNT and the
-- per-configuration cap read the last 10 minutes of it.
DROP TABLE account_logins;
CREATE TABLE account_logins (
    job_id          text PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    account         text NOT NULL,
    sent_at         timestamptz NOT NULL,
    settles_at      timestamptz NOT NULL,
    planned         integer NOT NULL,
    logins          integer
);
CREATE INDEX account_logins_key ON account_logins (organization_id, account, sent_at);
CREATE INDEX account_logins_sent_at ON account_logins (sent_at);

-- A monitor whose logins reached its cap: shown on the monitor, its owners told once per
-- episode (an episode ends when a window passes without the cap reached).
CREATE TABLE login_caps (
    monitor_id      bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    since           timestamptz NOT NULL,
    last_at         timestamptz NOT NULL,
    cap             integer NOT NULL,
    notified        boolean NOT NULL DEFAULT false
);

ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_kind_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_kind_check
    CHECK (kind IN ('down', 'reminder', 'recovered', 'finding', 'cert_expiry', 'credentials',
                    'held_back', 'login_cap'));
