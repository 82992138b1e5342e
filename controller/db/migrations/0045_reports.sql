-- Reports the world's senders send about a monitored domain (issue 59): TLS-RPT (RFC 8460) and
-- DMARC aggregate reports (RFC 7489), each stored once per organization, counted per domain,
-- reporter, day, result and (TLS) receiving MX and IP; kept REPORTS_RETENTION_DAYS.

-- An organization's thresholds for the findings reports raise; no row: the defaults
-- (controller/reports/rules.py, `ReportSettings`).
CREATE TABLE report_settings (
    organization_id     bigint PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    window_days         integer NOT NULL CHECK (window_days BETWEEN 1 AND 90),
    tls_failures_min    integer NOT NULL CHECK (tls_failures_min >= 1),
    dmarc_failures_min  integer NOT NULL CHECK (dmarc_failures_min >= 1),
    dmarc_unknown_min   integer NOT NULL CHECK (dmarc_unknown_min >= 1),
    known_networks      cidr[] NOT NULL DEFAULT '{}',
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One row per report taken: a reporter's report id is taken once per organization and kind.
CREATE TABLE reports (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    kind                text NOT NULL CHECK (kind IN ('tls', 'dmarc')),
    reporter            text NOT NULL,
    report_id           text NOT NULL,
    domains             text[] NOT NULL,
    begins_at           timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL,
    via                 text NOT NULL CHECK (via IN ('https', 'mail')),
    bytes               integer NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, kind, reporter, report_id)
);
CREATE INDEX reports_received ON reports (received_at);

-- The counts: sessions (TLS) or messages (DMARC) per domain, day (the report's first), reporter,
-- result (`success` or an RFC 8460 result type; `pass` or `fail` of DMARC alignment), receiving
-- MX and IP (TLS) or source IP (DMARC); '' where a report names none.
CREATE TABLE report_counts (
    report_id           bigint NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
    organization_id     bigint NOT NULL,
    domain              text NOT NULL,
    kind                text NOT NULL,
    day                 date NOT NULL,
    reporter            text NOT NULL,
    result              text NOT NULL,
    mx                  text NOT NULL,
    ip                  text NOT NULL,
    count               bigint NOT NULL CHECK (count >= 0)
);
CREATE INDEX report_counts_domain ON report_counts (organization_id, domain, kind, day);
CREATE INDEX report_counts_report ON report_counts (report_id);

-- Reports refused, with the reason (a sender's or a stranger's mistake costs this row only):
-- kept like reports, and at most the newest 1,000 per organization.
CREATE TABLE rejected_reports (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    via                 text NOT NULL CHECK (via IN ('https', 'mail')),
    reason              text NOT NULL,
    detail              text NOT NULL,
    source              text NOT NULL,  -- the path's domain, or the message's From and Subject
    bytes               integer NOT NULL,
    at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_reports_org ON rejected_reports (organization_id, at DESC, id DESC);

-- What each open report finding of a monitor was told with (its result types and MX, or
-- its networks): a notice goes again only when something new is reported.
CREATE TABLE report_finding_items (
    monitor_id          bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    code                text NOT NULL,
    items               text[] NOT NULL,
    PRIMARY KEY (monitor_id, code)
);

-- Report findings' notices are posture findings (`finding`); the domains a monitor names are
-- looked up by organization.
CREATE INDEX monitors_mail_domain ON monitors (organization_id, mail_domain)
    WHERE mail_domain IS NOT NULL;
