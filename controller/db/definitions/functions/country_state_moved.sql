CREATE OR REPLACE FUNCTION public.country_state_moved(s monitor_country_state, u country_state_move)
 RETURNS country_state_moved
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
RETURN ROW(((u).scheduled_at >= (s).last_scheduled_at), (u).status, (u).error_kind, (u).message, (u).scheduled_at, (u).job_id, GREATEST((s).last_checked_at, (u).checked_at), (CASE WHEN (u).reset_fail THEN 0 ELSE (s).consecutive_failures END + (u).add_fail), (CASE WHEN (u).reset_succ THEN 0 ELSE (s).consecutive_successes END + (u).add_succ), (u).response_time_ms, (u).phases_ms, (u).cert_not_after, CASE WHEN ((u).detail_at >= COALESCE((s).detail_at, '-infinity'::timestamp with time zone)) THEN (u).detail_at ELSE (s).detail_at END, CASE WHEN ((u).detail_at >= COALESCE((s).detail_at, '-infinity'::timestamp with time zone)) THEN (u).detail_tag ELSE (s).detail_tag END, CASE WHEN ((u).detail_at >= COALESCE((s).detail_at, '-infinity'::timestamp with time zone)) THEN (u).detail_facts ELSE (s).detail_facts END)::country_state_moved
;
