-- The open relay test onto the side checks' frame (issue 65): its facts so far
-- (result_details.relay) move to its table; the column is no longer written.
SELECT side_check_table('relay');
INSERT INTO side_relay (job, monitor_id, country, scheduled_at, facts)
SELECT job_id::uuid, monitor_id, country, scheduled_at, relay
FROM check_results WHERE relay IS NOT NULL
ON CONFLICT (job) DO NOTHING;
