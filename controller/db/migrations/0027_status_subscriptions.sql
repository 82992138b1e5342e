-- Status pages people subscribe to (issue 27): notices written by a person (an incident or a
-- maintenance, with its updates), e-mail subscribers (double opt-in) and the requests that
-- bound how often an anonymous visitor may make the controller mail an address.

-- A notice on one page, written by an owner or admin: open until resolved.
CREATE TABLE status_notices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    status_page_id  bigint NOT NULL REFERENCES status_pages(id) ON DELETE CASCADE,
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    impact          text NOT NULL CHECK (impact IN ('none', 'minor', 'major', 'maintenance')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz
);
CREATE INDEX status_notices_page ON status_notices (status_page_id, created_at DESC);

-- Each update of a notice, newest last; the one that resolves it has state `resolved`.
CREATE TABLE status_notice_updates (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id       bigint NOT NULL REFERENCES status_notices(id) ON DELETE CASCADE,
    state           text NOT NULL
                    CHECK (state IN ('investigating', 'identified', 'monitoring', 'resolved')),
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 5000),
    author_id       bigint REFERENCES users(id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_notice_updates_notice ON status_notice_updates (notice_id, id);

-- E-mail subscribers of a page. Only the SHA-256 of the confirmation token is kept; a
-- subscriber is told updates once `confirmed_at` is set. One row per page and address.
CREATE TABLE status_subscribers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    status_page_id  bigint NOT NULL REFERENCES status_pages(id) ON DELETE CASCADE,
    email           text NOT NULL,
    confirm_hash    bytea UNIQUE,
    confirm_expires timestamptz,
    confirmed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX status_subscribers_address ON status_subscribers (status_page_id, lower(email));

-- Subscription requests that mailed a confirmation, by page and by address (its SHA-256, the
-- address itself is not kept for a request): the per-page and per-address limits count these.
CREATE TABLE status_subscribe_requests (
    status_page_id  bigint NOT NULL REFERENCES status_pages(id) ON DELETE CASCADE,
    address_hash    bytea NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_subscribe_requests_page ON status_subscribe_requests (status_page_id, at);
CREATE INDEX status_subscribe_requests_address ON status_subscribe_requests (address_hash, at);

-- Subscriber mail goes through the outbox like alerts, but belongs to a page, not a monitor:
-- such a row names its organization instead (its budget), and its history line no monitor.
ALTER TABLE notification_outbox ALTER COLUMN monitor_id DROP NOT NULL;
ALTER TABLE notification_outbox ADD COLUMN organization_id bigint
    REFERENCES organizations(id) ON DELETE CASCADE;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_owner_check
    CHECK (monitor_id IS NOT NULL OR organization_id IS NOT NULL);
ALTER TABLE alert_history ALTER COLUMN monitor_id DROP NOT NULL;
-- A subscriber mail's one-click unsubscribe URL, sent as List-Unsubscribe (RFC 8058).
ALTER TABLE notification_outbox ADD COLUMN list_unsubscribe text;

-- `status_confirm`: the double opt-in mail; `status_update`: a notice's update to subscribers.
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_kind_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_kind_check
    CHECK (kind IN ('down', 'reminder', 'recovered', 'finding', 'cert_expiry', 'credentials',
                    'held_back', 'login_cap', 'delivery', 'no_data',
                    'status_confirm', 'status_update'));

-- The subscribers' own hourly budget (ORG_MAX_SUBSCRIBER_MAILS_PER_HOUR), apart from alerts':
-- a page's subscribers never use up the e-mail its monitors' alerts need.
ALTER TABLE notification_budget DROP CONSTRAINT notification_budget_channel_check;
ALTER TABLE notification_budget ADD CONSTRAINT notification_budget_channel_check
    CHECK (channel IN ('email', 'sms', 'subscribers'));
