-- Reports from strangers, bounded (issue 64): running aggregates instead of every report's rows,
-- hourly intake counts per organization and domain, duplicates decided on content, rotatable
-- report tokens, report findings told once and then in one digest per interval.

-- The running aggregates: per organization, domain, kind, day (the report's first), reporter,
-- result, MX and IP, the sum of every report's counts, added in the report's transaction
-- (controller/reports/store.py `insert`). `net` is the network a DMARC source counts in
-- (controller/reports/rules.py `network`; '' for TLS). Kept REPORTS_RETENTION_DAYS by `day`.
CREATE TABLE report_items (
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    domain              text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('tls', 'dmarc')),
    day                 date NOT NULL,
    reporter            text NOT NULL,
    result              text NOT NULL,
    mx                  text NOT NULL,
    ip                  text NOT NULL,
    net                 text NOT NULL,
    count               bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (organization_id, domain, kind, day, reporter, result, mx, ip)
);
CREATE INDEX report_items_day ON report_items (day);
-- A day's largest rows of a domain and kind, read a few hundred at a time (the largest failures).
CREATE INDEX report_items_largest ON report_items (organization_id, domain, kind, day, count DESC);
-- A DMARC source network's rows of a domain (its sums over the window).
CREATE INDEX report_items_net ON report_items (organization_id, domain, net, day)
    WHERE kind = 'dmarc';

-- Per organization, domain, kind, day, reporter and result: the sum of counts (the totals API,
-- the charts' TLS lines, the `/metrics/reports` series, the TLS finding's threshold) and how many
-- `report_items` rows hold them (`items`), a few rows a day.
CREATE TABLE report_day_totals (
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    domain              text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('tls', 'dmarc')),
    day                 date NOT NULL,
    reporter            text NOT NULL,
    result              text NOT NULL,
    count               bigint NOT NULL CHECK (count >= 0),
    items               bigint NOT NULL CHECK (items >= 0),
    PRIMARY KEY (organization_id, domain, kind, day, reporter, result)
);

-- The stored aggregate rows of each organization's domain (bounded by REPORT_ROWS_KEPT): kept up
-- to date by `insert` and by the retention pass.
CREATE TABLE report_domain_rows (
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    domain              text NOT NULL,
    rows                bigint NOT NULL CHECK (rows >= 0),
    PRIMARY KEY (organization_id, domain)
);

-- The existing counts become aggregates. The network of a DMARC source is computed as `network`
-- does it (its /24, or /56 for IPv6; an IPv4-mapped address as the IPv4 address it is).
WITH c AS (
    SELECT organization_id, domain, kind, day, reporter, result, mx, ip, count,
        CASE WHEN ip LIKE '::ffff:%.%' THEN substr(ip, 8) ELSE ip END AS plain
    FROM report_counts
)
INSERT INTO report_items (organization_id, domain, kind, day, reporter, result, mx, ip, net, count)
SELECT organization_id, domain, kind, day, reporter, result, mx, ip,
    CASE WHEN kind = 'dmarc' AND plain <> '' THEN
        network(set_masklen(plain::inet, CASE WHEN family(plain::inet) = 4 THEN 24 ELSE 56 END))::text
    ELSE '' END,
    sum(count)
FROM c GROUP BY organization_id, domain, kind, day, reporter, result, mx, ip, plain;
INSERT INTO report_day_totals (organization_id, domain, kind, day, reporter, result, count, items)
SELECT organization_id, domain, kind, day, reporter, result, sum(count), count(*)
FROM report_items GROUP BY organization_id, domain, kind, day, reporter, result;
INSERT INTO report_domain_rows (organization_id, domain, rows)
SELECT organization_id, domain, count(*) FROM report_items GROUP BY organization_id, domain;
DROP TABLE report_counts;

-- A report is a duplicate when its content is (`digest`: a hash of the parsed report's
-- normalized content, controller/reports/parse.py `digest`), whatever id its sender chose.
ALTER TABLE reports ADD COLUMN digest bytea;
UPDATE reports SET digest = sha256(convert_to(kind || ':' || reporter || ':' || report_id, 'UTF8'));
ALTER TABLE reports ALTER COLUMN digest SET NOT NULL;
ALTER TABLE reports DROP CONSTRAINT reports_organization_id_kind_reporter_report_id_key;
ALTER TABLE reports ADD CONSTRAINT reports_content UNIQUE (organization_id, kind, digest);
CREATE INDEX reports_org ON reports (organization_id, received_at DESC, id DESC);

-- Reports and rows taken per organization, domain and clock hour (REPORTS_PER_HOUR,
-- REPORT_ROWS_PER_HOUR); rows of past hours are deleted by the retention pass.
CREATE TABLE report_intake (
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    domain              text NOT NULL,
    hour                timestamptz NOT NULL,
    reports             integer NOT NULL,
    rows                bigint NOT NULL,
    PRIMARY KEY (organization_id, domain, hour)
);

-- A domain's report token generation (controller/reports/tokens.py): none is generation 0.
-- Rotating makes the next generation the token, the previous one accepted until `grace_until`.
CREATE TABLE report_tokens (
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    domain              text NOT NULL,
    generation          integer NOT NULL CHECK (generation >= 1),
    rotated_at          timestamptz NOT NULL,
    grace_until         timestamptz NOT NULL,
    PRIMARY KEY (organization_id, domain)
);

-- What each open report finding of a monitor was told with, one row per item (its result type
-- and MX, or its network): a notice goes again only when something new is reported.
CREATE TABLE report_told (
    monitor_id          bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    code                text NOT NULL,
    item                text NOT NULL,
    PRIMARY KEY (monitor_id, code, item)
);
INSERT INTO report_told (monitor_id, code, item)
SELECT DISTINCT monitor_id, code, unnest(items) FROM report_finding_items;
DROP TABLE report_finding_items;

-- A monitor's report notices: when the last went (`told_at`); news within the interval after it
-- (the findings in `codes`, `news` new items) waits for the one digest due at `due_at`.
CREATE TABLE report_notices (
    monitor_id          bigint PRIMARY KEY REFERENCES monitors(id) ON DELETE CASCADE,
    told_at             timestamptz NOT NULL,
    codes               text[] NOT NULL DEFAULT '{}',
    news                integer NOT NULL DEFAULT 0,
    due_at              timestamptz
);
CREATE INDEX report_notices_due ON report_notices (due_at) WHERE due_at IS NOT NULL;
