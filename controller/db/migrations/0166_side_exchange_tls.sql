-- The Exchange Online TLS 1.0/1.1 retirement side check's facts, by job id.
SELECT side_check_table('exchange_tls');
