-- The messages the agents' receivers took (issue 83; shared/arrivals.py): one row an arrival,
-- what its Arrival said, the message itself never kept. Read by monitor and time for the
-- heartbeat verdict (controller/arrivals/rules.py); a monitor's go with it.
CREATE TABLE arrivals (
    arrival_id uuid PRIMARY KEY,
    monitor_id bigint NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    country text NOT NULL,
    agent_id text NOT NULL,
    arrived_at timestamptz NOT NULL,
    peer text NOT NULL,
    helo text NOT NULL DEFAULT '',
    mail_from text NOT NULL DEFAULT '',
    header_from text NOT NULL DEFAULT '',
    subject text NOT NULL DEFAULT '',
    tls_version text,
    tls_cipher text,
    starttls_offered boolean,
    size integer NOT NULL,
    spf text,
    dkim text,
    dkim_domains text[] NOT NULL DEFAULT '{}',
    dmarc text,
    dmarc_policy text NOT NULL DEFAULT '',
    arc text
);
CREATE INDEX arrivals_monitor_time ON arrivals (monitor_id, arrived_at DESC);
