-- Packs in bytes (issue 24): the numbers of a pack become thirteen byte strings, one per field.
--
-- 0032 kept a pack's numbers as 4-byte integers (and 2-byte spans), which PostgreSQL's pglz
-- cannot shrink where they vary from result to result (response time and phases in
-- microseconds, the stored time). A line is now the field's smallest value (`base`) and, per
-- result, its distance from it in as few whole bytes as the line's range needs, the same for
-- every result of the line: a response time varying within 65 ms takes 2 bytes, a field that
-- does not vary none. The encoding is exact: `result_pack_decode(result_pack_encode(v),
-- cardinality(v)) = v` for every integer array.
--
-- A line: byte 0 the width w (0-4), plus 8 when the first value is kept apart; bytes 1-4 the
-- base (int4, big-endian); when apart, bytes 5-8 the first value (int4); then per result (but
-- the first, when apart) w bytes (unsigned, big-endian) of value - base. The first value is kept
-- apart when that makes the line shorter: the lines of deltas start with a value from the start
-- of the hour, far from the deltas that follow. The lines, in order (`result_packs.lines`):
----  1 scheduled_at: ms after the previous result's (the first: after the hour)
--  2-3 started_ms, finished_ms: as in result_rows (ms after scheduled_at)
--  4 stored_at: ms after the previous result's (the first: after the hour)
--  5 response time in microseconds
--  6-10 dns_us, connect_us, tls_us, greeting_us, auth_us (-1: not reached)
--  11 agent (result_agents.id)
--  12 the full row's scheduled_at in ms after the hour (negative: an earlier hour of the day)
--  13 the full row's tag
-- `results` is the number of results of the pack (of `jobs`, which lives out of line).

CREATE FUNCTION result_pack_width(span bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN span = 0 THEN 0 WHEN span < 256 THEN 1 WHEN span < 65536 THEN 2
        WHEN span < 16777216 THEN 3 ELSE 4 END
$$;

CREATE FUNCTION result_pack_encode(vals integer[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT set_byte('\x00'::bytea, 0, b.w + CASE WHEN b.apart THEN 8 ELSE 0 END)
        || int4send(b.base) || CASE WHEN b.apart THEN int4send(b.first) ELSE ''::bytea END
        || coalesce((SELECT string_agg(substring(int8send(u.v::bigint - b.base) FROM 9 - b.w),
            ''::bytea ORDER BY u.i) FROM unnest(vals) WITH ORDINALITY AS u(v, i)
            WHERE NOT b.apart OR u.i > 1), ''::bytea)
    FROM (
        SELECT a.first, a.apart, CASE WHEN a.apart THEN a.rest_base ELSE a.all_base END AS base,
            CASE WHEN a.apart THEN a.w_rest ELSE a.w_all END AS w
        FROM (
            SELECT m.*, coalesce(4 + (m.n - 1) * m.w_rest < m.n * m.w_all, false) AS apart
            FROM (
                SELECT count(*) AS n, min(v) FILTER (WHERE i = 1) AS first,
                    min(v) AS all_base, result_pack_width(max(v)::bigint - min(v)) AS w_all,
                    min(v) FILTER (WHERE i > 1) AS rest_base,
                    result_pack_width(max(v) FILTER (WHERE i > 1)::bigint
                        - min(v) FILTER (WHERE i > 1)) AS w_rest
                FROM unnest(vals) WITH ORDINALITY AS u(v, i)
            ) m
        ) a
    ) b
$$;

-- PL/pgSQL, one loop per width: a quarter of the time of the same in SQL over a pack.
CREATE FUNCTION result_pack_decode(line bytea, n integer) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    w integer := get_byte(line, 0) & 7;
    apart boolean := get_byte(line, 0) >= 8;
    base bigint := (get_byte(line, 1) # 128)::bigint * 16777216 - 2147483648
        + get_byte(line, 2) * 65536 + get_byte(line, 3) * 256 + get_byte(line, 4);
    vals integer[] := array_fill(base::integer, ARRAY[n]);
    o integer := 5;
    first integer := 1;
BEGIN
    IF apart THEN
        vals[1] := (get_byte(line, 5) # 128)::bigint * 16777216 - 2147483648
            + get_byte(line, 6) * 65536 + get_byte(line, 7) * 256 + get_byte(line, 8);
        o := 9;
        first := 2;
    END IF;
    CASE w
    WHEN 0 THEN
        NULL;
    WHEN 1 THEN
        FOR i IN first .. n LOOP
            vals[i] := base + get_byte(line, o);
            o := o + 1;
        END LOOP;
    WHEN 2 THEN
        FOR i IN first .. n LOOP
            vals[i] := base + get_byte(line, o) * 256 + get_byte(line, o + 1);
            o := o + 2;
        END LOOP;
    WHEN 3 THEN
        FOR i IN first .. n LOOP
            vals[i] := base + get_byte(line, o) * 65536 + get_byte(line, o + 1) * 256
                + get_byte(line, o + 2);
            o := o + 3;
        END LOOP;
    ELSE
        FOR i IN first .. n LOOP
            vals[i] := base + get_byte(line, o)::bigint * 16777216 + get_byte(line, o + 1) * 65536
                + get_byte(line, o + 2) * 256 + get_byte(line, o + 3);
            o := o + 4;
        END LOOP;
    END CASE;
    RETURN vals;
END;
$$;

ALTER TABLE result_packs ADD COLUMN results integer, ADD COLUMN lines bytea[];
UPDATE result_packs SET results = cardinality(jobs), lines = ARRAY[
    result_pack_encode(nums[1:1]), result_pack_encode(spans[1:1]::integer[]),
    result_pack_encode(spans[2:2]::integer[]), result_pack_encode(nums[2:2]),
    result_pack_encode(nums[3:3]), result_pack_encode(nums[4:4]), result_pack_encode(nums[5:5]),
    result_pack_encode(nums[6:6]), result_pack_encode(nums[7:7]), result_pack_encode(nums[8:8]),
    result_pack_encode(nums[9:9]), result_pack_encode(nums[10:10]),
    result_pack_encode(nums[11:11])];
ALTER TABLE result_packs ALTER COLUMN results SET NOT NULL, ALTER COLUMN lines SET NOT NULL,
    ALTER COLUMN lines SET STORAGE MAIN;

-- New partitions: the job ids out of line, the lines in line (see 0032).
CREATE OR REPLACE FUNCTION result_packs_partition(part text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I SET (toast_tuple_target = 128)', part);
    EXECUTE format('ALTER TABLE %I ALTER COLUMN jobs SET STORAGE EXTERNAL,'
        ' ALTER COLUMN lines SET STORAGE MAIN', part);
END;
$$;

-- check_results as in 0032, the packs' numbers decoded from their lines.
CREATE OR REPLACE VIEW check_results AS
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
    d.mail_dns,
    date_trunc('hour', r.scheduled_at, 'UTC') AS hour
FROM result_rows r
JOIN result_details d ON d.monitor_id = r.monitor_id AND d.country = r.country
    AND d.scheduled_at = r.scheduled_at - coalesce(r.detail_ms, 0) * interval '1 ms'
    AND d.tag = CASE WHEN r.detail_ms IS NULL THEN r.tag ELSE r.ref_tag END
UNION ALL
SELECT
    u.job::text,
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
    d.mail_dns,
    p.hour
FROM result_packs p
CROSS JOIN LATERAL (
    SELECT x.job, p.hour + x.at_ms * interval '1 ms' AS scheduled_at, x.started_ms,
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

ALTER TABLE result_packs DROP COLUMN nums, DROP COLUMN spans;
