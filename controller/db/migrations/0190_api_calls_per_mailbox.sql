-- A job may call more than one mailbox over an API (a round trip sending as one mailbox and
-- reading another), and Gmail's quota units are reserved beside Graph's calls (issue 82): one
-- `api_calls` row per job and mailbox it reserved on.
ALTER TABLE api_calls DROP CONSTRAINT api_calls_pkey;
ALTER TABLE api_calls ADD PRIMARY KEY (job, mailbox);
