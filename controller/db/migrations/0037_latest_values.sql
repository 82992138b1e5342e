-- Latest values per monitor and country (issue 24): what `/metrics/monitors` shows of each
-- country's latest round besides its status (response time, phases, certificate expiry) is kept
-- on the country's state row, written by the ingester in the statement that moves the state,
-- from the same result as `last_status` and `last_job_id`. A scrape reads these rows by
-- monitor id instead of looking each result up in the open rows, their details or the packs.
--
--   last_response_time_ms  the result's response time (ms), NULL when it has none
--   last_phases_ms         its phases (ms) in the order dns, connect, tls, greeting, auth,
--                          submit, delivery, fetch; an element is NULL where not reached, the
--                          array NULL when the result has no phases at all
--   last_cert_not_after    its certificate's `certNotAfter` as the agent wrote it
ALTER TABLE monitor_country_state
    ADD COLUMN last_response_time_ms double precision,
    ADD COLUMN last_phases_ms double precision[],
    ADD COLUMN last_cert_not_after text;

-- A phase as a full row's `phases` has it (`<phase>Ms`): a JSON number, else NULL. The
-- ingester's phases are finite floats (decoded typed), so every number fits float8.
CREATE FUNCTION result_phase_value(v jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN v::float8 END
$$;

-- A full row's phases as `last_phases_ms` keeps them; NULL when `phases` is no JSON object.
CREATE FUNCTION result_phases_ms(phases jsonb) RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(phases) = 'object' THEN ARRAY[
        result_phase_value(phases->'dnsMs'), result_phase_value(phases->'connectMs'),
        result_phase_value(phases->'tlsMs'), result_phase_value(phases->'greetingMs'),
        result_phase_value(phases->'authMs'), result_phase_value(phases->'submitMs'),
        result_phase_value(phases->'deliveryMs'), result_phase_value(phases->'fetchMs')] END
$$;

-- A compact row's phases (`<phase>_us`, -1 when not reached) as `last_phases_ms` keeps them.
CREATE FUNCTION result_compact_phases_ms(
    dns_us integer, connect_us integer, tls_us integer, greeting_us integer, auth_us integer
) RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[
        CASE WHEN dns_us >= 0 THEN dns_us::float8 / 1000 END,
        CASE WHEN connect_us >= 0 THEN connect_us::float8 / 1000 END,
        CASE WHEN tls_us >= 0 THEN tls_us::float8 / 1000 END,
        CASE WHEN greeting_us >= 0 THEN greeting_us::float8 / 1000 END,
        CASE WHEN auth_us >= 0 THEN auth_us::float8 / 1000 END,
        NULL, NULL, NULL]::float8[]
$$;

-- The values of each state's latest result as stored so far: its open row and the full row it
-- points at, or (an hour already packed) the `check_results` view.
UPDATE monitor_country_state t SET
    last_response_time_ms = l.response_time_ms,
    last_phases_ms = l.phases_ms,
    last_cert_not_after = l.not_after
FROM (
    SELECT s.monitor_id, s.country,
        coalesce(r.response_time_ms, p.response_time_ms) AS response_time_ms,
        CASE WHEN r.detail_ms IS NOT NULL
            THEN result_compact_phases_ms(r.dns_us, r.connect_us, r.tls_us, r.greeting_us,
                r.auth_us)
            ELSE result_phases_ms(coalesce(d.phases, p.phases)) END AS phases_ms,
        coalesce(d.tls, p.tls)->>'certNotAfter' AS not_after
    FROM monitor_country_state s
    LEFT JOIN result_rows r ON r.monitor_id = s.monitor_id
        AND r.scheduled_at = s.last_scheduled_at AND r.country = result_country_code(s.country)
        AND r.tag = CASE WHEN s.last_job_id
            ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
            THEN result_tag(s.last_job_id::uuid) END
        AND r.job::text = lower(s.last_job_id)
    LEFT JOIN result_details d ON d.monitor_id = r.monitor_id AND d.country = r.country
        AND d.scheduled_at = r.scheduled_at - coalesce(r.detail_ms, 0) * interval '1 ms'
        AND d.tag = CASE WHEN r.detail_ms IS NULL THEN r.tag ELSE r.ref_tag END
    LEFT JOIN LATERAL (SELECT c.response_time_ms, c.phases, c.tls FROM check_results c
        WHERE r.monitor_id IS NULL AND c.monitor_id = s.monitor_id
        AND c.scheduled_at = s.last_scheduled_at
        AND c.hour = date_trunc('hour', s.last_scheduled_at, 'UTC')
        AND c.country = s.country AND c.job_id = s.last_job_id LIMIT 1) p ON true
    WHERE s.last_job_id <> ''
) l
WHERE t.monitor_id = l.monitor_id AND t.country = l.country;
