CREATE OR REPLACE VIEW public.check_results_unpacked AS
 SELECT (r.job)::text AS job_id,
    r.scheduled_at,
    r.monitor_id,
    d.monitor_public_id,
    d.monitor_type,
    result_country(r.country) AS country,
    ( SELECT a.name
           FROM result_agents a
          WHERE (a.id = r.agent)) AS agent_id,
    result_status(r.status) AS status,
    d.error_kind,
    d.message,
    d.banner,
    r.response_time_ms,
        CASE
            WHEN (r.detail_ms IS NULL) THEN d.phases
            ELSE jsonb_strip_nulls(jsonb_build_object('dnsMs', result_phase_ms(r.dns_us), 'connectMs', result_phase_ms(r.connect_us), 'tlsMs', result_phase_ms(r.tls_us), 'greetingMs', result_phase_ms(r.greeting_us), 'authMs', result_phase_ms(r.auth_us)))
        END AS phases,
    d.tls,
    d.address,
        CASE
            WHEN (r.detail_ms IS NULL) THEN d.started_at
            ELSE (r.scheduled_at + ((r.started_ms)::double precision * '00:00:00.001'::interval))
        END AS started_at,
        CASE
            WHEN (r.detail_ms IS NULL) THEN d.finished_at
            ELSE (r.scheduled_at + ((r.finished_ms)::double precision * '00:00:00.001'::interval))
        END AS finished_at,
        CASE
            WHEN (r.detail_ms IS NULL) THEN d.stored_at
            ELSE (r.scheduled_at + ((r.stored_ms)::double precision * '00:00:00.001'::interval))
        END AS stored_at,
    d.folder,
    d.hops,
    d.auth_results,
    d.capabilities,
    d.capabilities_before_tls,
    date_trunc('hour'::text, r.scheduled_at, 'UTC'::text) AS hour,
    d.scheduled_at AS detail_at,
    d.arc
   FROM (result_rows r
     JOIN result_details d ON (((d.monitor_id = r.monitor_id) AND (d.country = r.country) AND (d.scheduled_at = (r.scheduled_at - ((COALESCE(r.detail_ms, 0))::double precision * '00:00:00.001'::interval))) AND (d.tag =
        CASE
            WHEN (r.detail_ms IS NULL) THEN r.tag
            ELSE r.ref_tag
        END))));
