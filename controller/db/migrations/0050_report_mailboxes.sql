-- An organization's report mailbox (issue 59): where reporters mail TLS-RPT and DMARC aggregate
-- reports, read over IMAPS by the alerter role (controller/reports/reading.py) every
-- REPORTS_MAILBOX_INTERVAL_SECONDS. Its login is a password or an OAuth2 grant (its secrets
-- sealed like a monitor's, controller/secrets/box.py); the grant's access token is cached here,
-- sealed, with the refresh token the endpoint rotated to, if any.
CREATE TABLE report_mailboxes (
    organization_id     bigint PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    host                text NOT NULL,
    port                integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    username            text NOT NULL,
    password            text,       -- sealed (enc:v1:...), or null with a grant
    oauth2              jsonb,      -- a grant (controller/oauth2/grants.py), secrets sealed
    ca_pem              text,       -- a private CA the server's certificate must chain to
    folder              text NOT NULL,
    done_folder         text NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    access_token        text,       -- sealed, the grant's cached token
    token_expires_at    timestamptz,
    refresh_token       text,       -- sealed, a rotated one
    next_read_at        timestamptz NOT NULL DEFAULT now(),
    last_read_at        timestamptz,
    last_ok_at          timestamptz,
    last_error          text,
    last_messages       integer,
    last_stored         integer,
    last_rejected       integer,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((password IS NULL) <> (oauth2 IS NULL))
);
CREATE INDEX report_mailboxes_due ON report_mailboxes (next_read_at) WHERE enabled;
