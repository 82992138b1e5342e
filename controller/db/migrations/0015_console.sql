-- The web console (issue 17): public status pages per customer and the organization's scrape
-- tokens for the per-monitor Prometheus series.

-- One public page per customer, opt-in: only the monitors listed in status_page_monitors appear,
-- and their hostnames only when show_hostnames is set.
CREATE TABLE status_pages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    customer_id     bigint NOT NULL UNIQUE REFERENCES customers(id) ON DELETE CASCADE,
    slug            text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    title           text NOT NULL,
    show_hostnames  boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE status_page_monitors (
    status_page_id  bigint NOT NULL REFERENCES status_pages(id) ON DELETE CASCADE,
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    PRIMARY KEY (status_page_id, monitor_id)
);
CREATE INDEX status_page_monitors_monitor ON status_page_monitors (monitor_id);

-- Long-lived tokens for Prometheus, each reading one organization's series and nothing else;
-- only the SHA-256 of the token is stored, as for API tokens.
CREATE TABLE scrape_tokens (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name            text NOT NULL,
    token_hash      bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scrape_tokens_org ON scrape_tokens (organization_id);
