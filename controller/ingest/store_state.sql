-- A (monitor, country) state another transaction made while the batch's statement ran, moved
-- as that statement would have (controller/ingest/store.py, `_move_lost`): $1, the batch's
-- effects on the states (JSON objects of the statement's `lost` column).
UPDATE monitor_country_state s SET last_status = u.status,
    last_error_kind = u.error_kind,
    last_message = u.message,
    last_scheduled_at = u.scheduled_at,
    last_job_id = u.job_id,
    last_checked_at = greatest(s.last_checked_at, u.checked_at),
    consecutive_failures =
        CASE WHEN u.reset_fail THEN 0 ELSE s.consecutive_failures END + u.add_fail,
    consecutive_successes =
        CASE WHEN u.reset_succ THEN 0 ELSE s.consecutive_successes END + u.add_succ,
    last_response_time_ms = u.response_time_ms,
    last_phases_ms = u.phases_ms,
    last_cert_not_after = u.cert_not_after,
    updated_at = now(),
    detail_at = CASE WHEN u.detail_at >= coalesce(s.detail_at, '-infinity')
        THEN u.detail_at ELSE s.detail_at END,
    detail_tag = CASE WHEN u.detail_at >= coalesce(s.detail_at, '-infinity')
        THEN u.detail_tag ELSE s.detail_tag END,
    detail_facts = CASE WHEN u.detail_at >= coalesce(s.detail_at, '-infinity')
        THEN u.detail_facts ELSE s.detail_facts END
FROM json_to_recordset($1::json) AS u(monitor_id bigint, country text, status text, error_kind text, message text, scheduled_at timestamptz, job_id text, checked_at timestamptz, add_fail int, reset_fail bool, add_succ int, reset_succ bool, detail_at timestamptz, detail_tag smallint, detail_facts uuid, response_time_ms float8, phases_ms float8[], cert_not_after text)
WHERE s.monitor_id = u.monitor_id AND s.country = u.country
  AND u.scheduled_at >= s.last_scheduled_at
