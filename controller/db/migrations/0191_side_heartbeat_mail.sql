-- Heartbeat mail read from a mailbox (issue 83): each look's answer by job id, as every side
-- check's; the arrivals themselves go to `arrivals` as the heartbeat's.
SELECT side_check_table('heartbeat_mail');
