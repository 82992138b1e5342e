-- Mail DNS onto the side checks' frame (issue 65): its facts so far
-- (result_details.mail_dns, as the view check_results rebuilds them for every row) move to its
-- table; the column is no longer written.
SELECT side_check_table('mail_dns');
INSERT INTO side_mail_dns (job, monitor_id, country, scheduled_at, facts)
SELECT job_id::uuid, monitor_id, country, scheduled_at, mail_dns
FROM check_results WHERE mail_dns IS NOT NULL
ON CONFLICT (job) DO NOTHING;
