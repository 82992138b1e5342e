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

-- Logins that never lock the account: after a round whose credentials were rejected (`auth`),
-- checks that log in back off (controller.logins.backoff). `failures`: such rounds in a row;
-- `since`: the first; `retry_at`: no login before then, and then from one country only, until
-- one succeeds (the row goes). `notified`: the owner was told, once per back-off.
CREATE TABLE login_backoff (
    monitor_id  bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    failures    integer NOT NULL CHECK (failures > 0),
    since       timestamptz NOT NULL,
    retry_at    timestamptz NOT NULL,
    notified    boolean NOT NULL DEFAULT false
);

-- New credentials (a new user name or secret, whoever writes them) end the back-off at once. The
-- API keeps a stored secret's ciphertext when it is sent back masked, so only a new one counts.
CREATE FUNCTION monitors_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.config->'auth' IS DISTINCT FROM OLD.config->'auth'
       OR NEW.config->'user' IS DISTINCT FROM OLD.config->'user'
       OR NEW.config->'password' IS DISTINCT FROM OLD.config->'password' THEN
        DELETE FROM login_backoff WHERE monitor_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER monitors_credentials_changed AFTER UPDATE OF config ON monitors
    FOR EACH ROW EXECUTE FUNCTION monitors_credentials_changed();

-- `credentials`: the owner's one notice that checks were slowed (no incident of its own).
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_kind_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_kind_check
    CHECK (kind IN ('down', 'reminder', 'recovered', 'finding', 'cert_expiry', 'credentials'));

-- Logins to one account go country after country (LOGIN_SPACING_SECONDS apart), not all at
-- once: the scheduler publishes a round's first credentialed job and keeps the others here
-- (`payload`: the job as published, its config sealed to its country) until `publish_at`; one
-- whose round has had a login rejected meanwhile is not sent (`auth_backoff`).
CREATE TABLE deferred_jobs (
    job_id          text PRIMARY KEY,
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    scheduled_at    timestamptz NOT NULL,
    country         text NOT NULL,
    publish_at      timestamptz NOT NULL,
    payload         bytea NOT NULL,
    account         text NOT NULL
);
CREATE INDEX deferred_jobs_publish_at ON deferred_jobs (publish_at);

-- Logins sent to each account (a keyed hash of user@host: no user name stored), across every
-- monitor, country and agent, for LOGIN_CAP_PER_ACCOUNT per 10 minutes; rows older than that
-- are deleted as new ones come.
CREATE TABLE account_logins (
    account     text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX account_logins_account ON account_logins (account);
CREATE INDEX account_logins_at ON account_logins (at);
