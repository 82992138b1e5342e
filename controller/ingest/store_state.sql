-- A (monitor, country) state another transaction made while the batch's statement ran, moved
-- as that statement would have (controller/ingest/store.py, `_move_lost`), as
-- `country_state_moved` says (migration 0110): $1, the batch's effects on the states (JSON
-- objects of the statement's `lost` column, each a `country_state_move`); $2: the writer's clock.
UPDATE monitor_country_state s SET last_status = (country_state_moved(s, u)).last_status,
    last_error_kind = (country_state_moved(s, u)).last_error_kind,
    last_message = (country_state_moved(s, u)).last_message,
    last_scheduled_at = (country_state_moved(s, u)).last_scheduled_at,
    last_job_id = (country_state_moved(s, u)).last_job_id,
    last_checked_at = (country_state_moved(s, u)).last_checked_at,
    consecutive_failures = (country_state_moved(s, u)).consecutive_failures,
    consecutive_successes = (country_state_moved(s, u)).consecutive_successes,
    last_response_time_ms = (country_state_moved(s, u)).last_response_time_ms,
    last_phases_ms = (country_state_moved(s, u)).last_phases_ms,
    last_cert_not_after = (country_state_moved(s, u)).last_cert_not_after,
    updated_at = $2::timestamptz,
    detail_at = (country_state_moved(s, u)).detail_at,
    detail_tag = (country_state_moved(s, u)).detail_tag,
    detail_facts = (country_state_moved(s, u)).detail_facts
FROM json_populate_recordset(NULL::country_state_move, $1::json) AS u
WHERE s.monitor_id = u.monitor_id AND s.country = u.country
  AND (country_state_moved(s, u)).moves
