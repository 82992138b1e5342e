-- A round trip's ARC verdict (the result's `arc`: its sets, the topmost seal's `cv`, the
-- topmost ARC-Authentication-Results) kept with the result's other facts, and read by both
-- views of the results (migration 0127), as their last column.
ALTER TABLE result_details ADD COLUMN arc jsonb;

CREATE OR REPLACE VIEW check_results_unpacked AS
SELECT
    r.job::text AS job_id,
    r.scheduled_at,
    r.monitor_id,
    d.monitor_public_id,
    d.monitor_type,
    result_country(r.country) AS country,
    (SELECT a.name FROM result_agents a WHERE a.id = r.agent) AS agent_id,
    result_status(r.status) AS status,
    d.error_kind,
    d.message,
    d.banner,
    r.response_time_ms,
    CASE WHEN r.detail_ms IS NULL THEN d.phases ELSE jsonb_strip_nulls(jsonb_build_object(
        'dnsMs', result_phase_ms(r.dns_us), 'connectMs', result_phase_ms(r.connect_us),
        'tlsMs', result_phase_ms(r.tls_us), 'greetingMs', result_phase_ms(r.greeting_us),
        'authMs', result_phase_ms(r.auth_us))) END AS phases,
    d.tls,
    d.address,
    CASE WHEN r.detail_ms IS NULL THEN d.started_at
        ELSE r.scheduled_at + r.started_ms * interval '1 ms' END AS started_at,
    CASE WHEN r.detail_ms IS NULL THEN d.finished_at
        ELSE r.scheduled_at + r.finished_ms * interval '1 ms' END AS finished_at,
    CASE WHEN r.detail_ms IS NULL THEN d.stored_at
        ELSE r.scheduled_at + r.stored_ms * interval '1 ms' END AS stored_at,
    d.folder,
    d.hops,
    d.auth_results,
    d.capabilities,
    d.capabilities_before_tls,
    date_trunc('hour', r.scheduled_at, 'UTC') AS hour,
    d.scheduled_at AS detail_at,
    d.arc
FROM result_rows r
JOIN result_details d ON d.monitor_id = r.monitor_id AND d.country = r.country
    AND d.scheduled_at = r.scheduled_at - coalesce(r.detail_ms, 0) * interval '1 ms'
    AND d.tag = CASE WHEN r.detail_ms IS NULL THEN r.tag ELSE r.ref_tag END;

CREATE OR REPLACE VIEW check_results AS
SELECT * FROM check_results_unpacked
UNION ALL
SELECT
    result_pack_job(u.job, p.seed, u.at_ms)::text,
    u.scheduled_at,
    p.monitor_id,
    d.monitor_public_id,
    d.monitor_type,
    result_country(p.country),
    (SELECT a.name FROM result_agents a WHERE a.id = u.agent),
    'up',
    d.error_kind,
    d.message,
    d.banner,
    result_us_ms(u.response_us),
    jsonb_strip_nulls(jsonb_build_object(
        'dnsMs', result_phase_ms(u.dns_us), 'connectMs', result_phase_ms(u.connect_us),
        'tlsMs', result_phase_ms(u.tls_us), 'greetingMs', result_phase_ms(u.greeting_us),
        'authMs', result_phase_ms(u.auth_us))),
    d.tls,
    d.address,
    u.scheduled_at + u.started_ms * interval '1 ms',
    u.scheduled_at + u.finished_ms * interval '1 ms',
    u.scheduled_at + u.stored_ms * interval '1 ms',
    d.folder,
    d.hops,
    d.auth_results,
    d.capabilities,
    d.capabilities_before_tls,
    p.hour,
    d.scheduled_at,
    d.arc
FROM result_packs p
CROSS JOIN LATERAL (
    SELECT x.job, x.at_ms::integer AS at_ms, p.hour + x.at_ms * interval '1 ms' AS scheduled_at,
        x.started_ms,
        x.finished_ms, x.stored_ms - x.at_ms AS stored_ms, x.response_us, x.dns_us, x.connect_us,
        x.tls_us, x.greeting_us, x.auth_us, x.agent, x.ref_ms, x.ref_tag
    FROM unnest(p.jobs, result_running_sum(result_pack_decode(p.lines[1], p.results)),
        result_pack_decode(p.lines[2], p.results),
        result_pack_decode(p.lines[3], p.results),
        result_running_sum(result_pack_decode(p.lines[4], p.results)),
        result_pack_decode(p.lines[5], p.results),
        result_pack_decode(p.lines[6], p.results),
        result_pack_decode(p.lines[7], p.results),
        result_pack_decode(p.lines[8], p.results),
        result_pack_decode(p.lines[9], p.results),
        result_pack_decode(p.lines[10], p.results),
        result_pack_decode(p.lines[11], p.results),
        result_pack_decode(p.lines[12], p.results),
        result_pack_decode(p.lines[13], p.results))
        AS x(job, at_ms, started_ms, finished_ms, stored_ms, response_us, dns_us, connect_us,
            tls_us, greeting_us, auth_us, agent, ref_ms, ref_tag)
) u
JOIN result_details d ON d.monitor_id = p.monitor_id AND d.country = p.country
    AND d.scheduled_at = p.hour + u.ref_ms * interval '1 ms' AND d.tag = u.ref_tag;
