-- Alerting: per-monitor alert state, thresholds, incidents, the notification outbox and its
-- delivery history, maintenance windows, and the queue of monitors waiting for evaluation.

-- Organization-wide defaults; an organization without a row uses the built-in ones (0.5, 2, 2).
-- failure_threshold: a round fails when MORE than this share of the countries that ran it failed
-- (0.5: a majority; 0: any one country).
CREATE TABLE organization_alert_settings (
    organization_id         bigint PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    failure_threshold       double precision NOT NULL CHECK (failure_threshold >= 0 AND failure_threshold < 1),
    down_after_rounds       integer NOT NULL CHECK (down_after_rounds BETWEEN 1 AND 100),
    recover_after_rounds    integer NOT NULL CHECK (recover_after_rounds BETWEEN 1 AND 100),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- Per-monitor overrides; NULL inherits the organization's value.
CREATE TABLE monitor_alert_settings (
    monitor_id              bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    failure_threshold       double precision CHECK (failure_threshold >= 0 AND failure_threshold < 1),
    down_after_rounds       integer CHECK (down_after_rounds BETWEEN 1 AND 100),
    recover_after_rounds    integer CHECK (recover_after_rounds BETWEEN 1 AND 100),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- One row per outage: from the first failing round of the streak that opened it to the first
-- passing round of the streak that closed it. `notified`: its down notice was queued (false while
-- it was opened in maintenance and nobody has been told).
CREATE TABLE incidents (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    monitor_id          bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    started_at          timestamptz NOT NULL,
    opened_at           timestamptz NOT NULL DEFAULT now(),
    ended_at            timestamptz,
    duration_seconds    double precision
        GENERATED ALWAYS AS (extract(epoch FROM ended_at - started_at)) STORED,
    cause_kind          text NOT NULL,
    cause               text NOT NULL,
    countries           text[] NOT NULL,
    notified            boolean NOT NULL DEFAULT false,
    reminders           integer NOT NULL DEFAULT 0
);
CREATE INDEX incidents_monitor_started ON incidents (monitor_id, started_at DESC, id DESC);
CREATE UNIQUE INDEX incidents_one_open ON incidents (monitor_id) WHERE ended_at IS NULL;

-- The alerter's view of a monitor, moved one complete round at a time (rounds are identified by
-- their scheduled time). A missed round moves neither counter.
CREATE TABLE monitor_alert_state (
    monitor_id              bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    state                   text NOT NULL DEFAULT 'unknown'
        CHECK (state IN ('unknown', 'up', 'degraded', 'down', 'missed')),
    consecutive_down_rounds integer NOT NULL DEFAULT 0,
    consecutive_up_rounds   integer NOT NULL DEFAULT 0,
    down_since              timestamptz,
    up_since                timestamptz,
    last_round_at           timestamptz,
    open_incident_id        bigint REFERENCES incidents(id) ON DELETE SET NULL,
    last_notified_at        timestamptz,
    changed_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- Monitors waiting for evaluation. The ingester (and the scheduler's no_agent rows) upsert
-- due_at = now() in the transaction that stores results; the alerter claims due rows with
-- FOR UPDATE SKIP LOCKED, leasing them (due_at = end of the lease), and deletes them when done
-- (unless marked again meanwhile), or moves due_at to when a pending round closes.
CREATE TABLE alert_queue (
    monitor_id  bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    due_at      timestamptz NOT NULL
);
CREATE INDEX alert_queue_due ON alert_queue (due_at);

-- Notifications to deliver, written in the transaction of the state change that causes them.
-- dedupe_key is unique, so an evaluation repeated by another replica cannot queue twice.
CREATE TABLE notification_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    incident_id     bigint REFERENCES incidents(id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('down', 'reminder', 'recovered')),
    channel         text NOT NULL CHECK (channel IN ('email', 'sms')),
    target          text NOT NULL,
    subject         text NOT NULL DEFAULT '',
    body_text       text NOT NULL,
    body_html       text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    dedupe_key      text NOT NULL UNIQUE
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE status = 'pending';

-- Every delivery attempt, successful or not.
CREATE TABLE alert_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id       bigint NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    incident_id     bigint REFERENCES incidents(id) ON DELETE CASCADE,
    kind            text NOT NULL,
    channel         text NOT NULL,
    target          text NOT NULL,
    attempt         integer NOT NULL,
    status          text NOT NULL CHECK (status IN ('sent', 'failed')),
    error           text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_history_monitor_at ON alert_history (monitor_id, at DESC, id DESC);

-- State-change events for `mon.events.MONITOR`, written with the change and published (then
-- deleted) after the commit; a publish that fails is retried, never lost. msg_id is the
-- Nats-Msg-Id, so a retried publish is dropped by JetStream as a duplicate.
CREATE TABLE event_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject         text NOT NULL,
    msg_id          text NOT NULL UNIQUE,
    payload         bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Maintenance windows: one-off (starts_at..ends_at) or weekly (ISO weekday 1 = Monday, local
-- start time, duration, IANA time zone), for one monitor or all monitors of one customer.
CREATE TABLE maintenance_windows (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    monitor_id          bigint REFERENCES monitors(id) ON DELETE CASCADE,
    customer_id         bigint REFERENCES customers(id) ON DELETE CASCADE,
    kind                text NOT NULL CHECK (kind IN ('once', 'weekly')),
    starts_at           timestamptz,
    ends_at             timestamptz,
    weekday             smallint CHECK (weekday BETWEEN 1 AND 7),
    start_time          time,
    duration_minutes    integer CHECK (duration_minutes BETWEEN 1 AND 10080),
    timezone            text,
    note                text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((monitor_id IS NULL) <> (customer_id IS NULL)),
    CHECK (kind <> 'once' OR (starts_at IS NOT NULL AND ends_at > starts_at)),
    CHECK (kind <> 'weekly'
        OR (weekday IS NOT NULL AND start_time IS NOT NULL AND duration_minutes IS NOT NULL
            AND timezone IS NOT NULL))
);
CREATE INDEX maintenance_windows_org ON maintenance_windows (organization_id, created_at DESC);
CREATE INDEX maintenance_windows_monitor ON maintenance_windows (monitor_id);
CREATE INDEX maintenance_windows_customer ON maintenance_windows (customer_id);
