-- Inconclusive results (issue 16): a check whose failure the agent's own path explains (its
-- canary for that port, or its resolver check, failed too) is stored as status `inconclusive`,
-- error kind `inconclusive`, the agent's message saying which self-check failed. Like `missed`,
-- it moves neither counter of monitor_country_state (whose last_status takes any status).
--
-- NOT VALID: every stored row passed the stricter constraint this one replaces, so checking the
-- whole result history again (under the migration's exclusive lock, holding back the ingester)
-- would prove nothing; new rows and new partitions are checked as always.
ALTER TABLE check_results DROP CONSTRAINT check_results_status_check;
ALTER TABLE check_results ADD CONSTRAINT check_results_status_check
    CHECK (status IN ('up', 'down', 'missed', 'inconclusive')) NOT VALID;
