-- The outbound addresses and domains a user lists for an SMTP monitor's blocklist checks (issue
-- 58): `{"ips": [...], "domains": [...]}`, public addresses and DNS names as the API normalised
-- them; null: none. The scheduler carries them in the job's `blocklists` (BlocklistAsk.ips and
-- .domains), beside what the agent resolves itself (the host's and the MX hosts' addresses).
ALTER TABLE monitors ADD COLUMN reputation jsonb;
