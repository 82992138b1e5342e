-- A domain's report findings are facts of (organization, customer, domain) (issue 80): one
-- notice per recipient however many monitors name the domain. When the last notice about a
-- customer's domain went (`told_at`); news within the interval after it (the findings in
-- `codes`, `news` new items) waits for the one digest due at `due_at`. Replaces the
-- per-monitor `report_notices` for this release's controllers (kept while a previous release
-- may run: it writes there, and nothing here reads it).
CREATE TABLE report_fact_notices (
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    customer_id         bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    domain              text NOT NULL,
    told_at             timestamptz NOT NULL,
    codes               text[] NOT NULL DEFAULT '{}',
    news                integer NOT NULL DEFAULT 0,
    due_at              timestamptz,
    PRIMARY KEY (organization_id, customer_id, domain)
);
CREATE INDEX report_fact_notices_due ON report_fact_notices (due_at) WHERE due_at IS NOT NULL;

-- The monitors' clocks become their domain's: the latest notice, the news they held, the
-- earliest digest due.
INSERT INTO report_fact_notices (organization_id, customer_id, domain, told_at, codes, news,
    due_at)
SELECT m.organization_id, m.customer_id, m.mail_domain, max(n.told_at),
    ARRAY(SELECT DISTINCT c FROM report_notices n2 JOIN monitors m2 ON m2.id = n2.monitor_id,
          unnest(n2.codes) c
          WHERE m2.organization_id = m.organization_id AND m2.customer_id = m.customer_id
            AND m2.mail_domain = m.mail_domain ORDER BY 1),
    max(n.news), min(n.due_at)
FROM report_notices n JOIN monitors m ON m.id = n.monitor_id
WHERE m.mail_domain IS NOT NULL
GROUP BY m.organization_id, m.customer_id, m.mail_domain;
