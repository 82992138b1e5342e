-- The results store's statement (controller/ingest/store.py, `store`): one per batch. $1: the
-- batch as one JSON array, a result an array: its facts' hash (0), then its fields at the
-- positions `BATCH` declares (read below, each cast once); $2: the time before which a result
-- may be in a pack already (`_INSERT_OLD` looks there); $3: the writer's clock (`stored_at`,
-- `stored_ms`, the states' `updated_at`). Plain SQL: the rules it spells out that
-- Python holds too (the missed kinds, `inconclusive`, the uncounted statuses, the phases, the
-- latency buckets, the state's fold) are checked against those when the module loads.
--
-- Each value a result's row is made of is computed once, in a subquery that OFFSET 0 keeps
-- apart (r's fields, then f's columns): an expression the planner pulls up into the query
-- above it is evaluated again wherever that query names its column (an inlined function
-- evaluates its argument as often as its body names it).
--
-- A batch holding each (monitor, country) once, as a routine batch does, takes the same
-- statement without r's DISTINCT ON and with the CTEs marked "once" below (b to k, w to u) in
-- their one-row forms (store_once.sql: k, u).
WITH r AS (
    SELECT DISTINCT ON (m.id, r."scheduledAt", r.country_code, r.tag)
        m.id AS monitor_id, r.job, r."scheduledAt" AS scheduled_at,
        r."monitorId" AS public_id, r."monitorType" AS monitor_type, r.facts, r.country AS cc,
        r.country_code AS country, r."agentId" AS agent_id, r.tag,
        r.stored AS status,
        CASE WHEN r.status = 'up' THEN NULL WHEN r.stored = 'inconclusive' THEN 'inconclusive'
            ELSE r."errorKind" END AS error_kind,
        coalesce(r.message, '') AS message, r.banner, r."responseTimeMs" AS response_time_ms,
        r.phases, r.tls, r.address, r."startedAt" AS started_at, r."finishedAt" AS finished_at,
        r.folder, r.hops, r."authResults" AS auth_results, r.capabilities,
        r."capabilitiesBeforeTls" AS capabilities_before_tls, r.arc,
        r.dns_ms, r.connect_ms, r.tls_ms, r.greeting_ms, r.auth_ms
    FROM (SELECT j.*, result_country_code(j.country) AS country_code, result_tag(j.job) AS tag
    FROM (SELECT (e->>0)::uuid AS facts,
        e->>1 AS "jobId",
        (e->>2)::timestamptz AS "scheduledAt",
        (e->>3)::uuid AS "monitorId",
        e->>4 AS "monitorType",
        e->>5 AS "country",
        e->>6 AS "agentId",
        e->>7 AS "status",
        e->>8 AS "errorKind",
        e->>9 AS "message",
        e->>10 AS "banner",
        (e->>11)::float8 AS "responseTimeMs",
        nullif(e->12, 'null') AS "phases",
        nullif(e->13, 'null') AS "tls",
        e->>14 AS "address",
        (e->>15)::timestamptz AS "startedAt",
        (e->>16)::timestamptz AS "finishedAt",
        e->>17 AS "folder",
        nullif(e->18, 'null') AS "hops",
        nullif(e->19, 'null') AS "authResults",
        nullif(e->20, 'null') AS "capabilities",
        nullif(e->21, 'null') AS "capabilitiesBeforeTls",
        nullif(e->22, 'null') AS "arc",
        (e->>1)::uuid AS job,
        -- the status as stored (migration 0083)
        result_stored_status(e->>7, e->>8) AS stored,
        -- the phases a compact row keeps (`result_phase_us` of each, in f)
        (e->12->>'dnsMs')::float8 AS dns_ms, (e->12->>'connectMs')::float8 AS connect_ms,
        (e->12->>'tlsMs')::float8 AS tls_ms, (e->12->>'greetingMs')::float8 AS greeting_ms,
        (e->12->>'authMs')::float8 AS auth_ms
        FROM jsonb_array_elements($1::text::jsonb) AS e OFFSET 0) AS j OFFSET 0) AS r
    -- Each result's monitor and (in c) its per-country state are looked up by key, in
    -- subqueries OFFSET 0 keeps apart: a plain join may be planned as a hash of the whole
    -- table, and every batch then costs as much as the table is large.
    CROSS JOIN LATERAL (SELECT m.id FROM monitors m WHERE m.public_id = r."monitorId" OFFSET 0) m
    -- A result scheduled before $2 may be in a pack already (controller.ingest.packer):
    -- `_INSERT_OLD` looks there; `_INSERT` stores none of them.
    WHERE r."scheduledAt" >= $2
    ORDER BY m.id, r."scheduledAt", r.country_code, r.tag,
        r."agentId" IS NULL, r.stored = 'missed', r.stored = 'inconclusive'
), f AS (
    SELECT r.*, a.id AS agent, x.*,
        coalesce(r.status = 'up' AND a.id IS NOT NULL AND r.response_time_ms IS NOT NULL
            AND r.scheduled_at + x.started_ms * interval '1 ms' = r.started_at
            AND r.scheduled_at + x.finished_ms * interval '1 ms' = r.finished_at
            AND greatest(abs(x.started_ms), abs(x.finished_ms), abs(x.stored_ms)) < 2000000000
            AND x.dns_us IS NOT NULL AND x.connect_us IS NOT NULL AND x.tls_us IS NOT NULL
            AND x.greeting_us IS NOT NULL AND x.auth_us IS NOT NULL
            AND jsonb_strip_nulls(r.phases)
                - ARRAY['dnsMs', 'connectMs', 'tlsMs', 'greetingMs', 'authMs']
                = '{}'::jsonb, false) AS fits
    FROM r LEFT JOIN result_agents a ON md5(a.name) = md5(r.agent_id)
    CROSS JOIN LATERAL (SELECT
        round(extract(epoch FROM r.started_at - r.scheduled_at) * 1000) AS started_ms,
        round(extract(epoch FROM r.finished_at - r.scheduled_at) * 1000) AS finished_ms,
        round(extract(epoch FROM $3::timestamptz - r.scheduled_at) * 1000) AS stored_ms,
        result_phase_us(r.dns_ms) AS dns_us, result_phase_us(r.connect_ms) AS connect_us,
        result_phase_us(r.tls_ms) AS tls_us, result_phase_us(r.greeting_ms) AS greeting_us,
        result_phase_us(r.auth_ms) AS auth_us OFFSET 0) x
    OFFSET 0
), c AS (
    SELECT f.*, s.detail_at, s.detail_tag, s.detail_facts,
        s.monitor_id IS NULL AS fresh,
        date_trunc('day', f.scheduled_at, 'UTC') AS day,
        -- whether the result says what the state's latest full row (of its UTC day) said
        coalesce(f.fits AND s.detail_facts = f.facts AND s.detail_at <= f.scheduled_at
            AND date_trunc('day', s.detail_at, 'UTC') = date_trunc('day', f.scheduled_at, 'UTC'),
            false) AS follows_state
    FROM f LEFT JOIN LATERAL (SELECT s.monitor_id, s.detail_at, s.detail_tag, s.detail_facts
        FROM monitor_country_state s WHERE s.monitor_id = f.monitor_id AND s.country = f.cc
        OFFSET 0) s ON true
), b AS (
    -- once: b, g, h and k are k (store_once.sql)
    SELECT c.*, (lag(c.facts) OVER (PARTITION BY c.monitor_id, c.country, c.day
        ORDER BY c.scheduled_at, c.tag) IS DISTINCT FROM c.facts)::int AS breaks
    FROM c
), g AS (
    SELECT b.*, sum(b.breaks) OVER (PARTITION BY b.monitor_id, b.country, b.day
        ORDER BY b.scheduled_at, b.tag) AS run
    FROM b
), h AS (
    SELECT g.*, row_number() OVER run = 1 AS starts,
        first_value(g.scheduled_at) OVER run AS start_at, first_value(g.tag) OVER run AS start_tag
    FROM g WINDOW run AS (PARTITION BY g.monitor_id, g.country, g.day, g.run
        ORDER BY g.scheduled_at, g.tag)
), k AS (
    -- A run of results with the same facts in this batch: its first is compact when it says
    -- what the state's latest full row said, else full; the others point where it points, or
    -- at it.
    SELECT h.*, CASE WHEN h.starts THEN h.follows_state ELSE h.fits END AS compact,
        CASE WHEN first_value(h.follows_state) OVER run THEN h.detail_at ELSE h.start_at END
            AS ref_at,
        CASE WHEN first_value(h.follows_state) OVER run THEN h.detail_tag ELSE h.start_tag END
            AS ref_tag
    FROM h WINDOW run AS (PARTITION BY h.monitor_id, h.country, h.day, h.run
        ORDER BY h.scheduled_at, h.tag)
), ins AS (
    INSERT INTO result_rows AS o (scheduled_at, monitor_id, response_time_ms, job, started_ms,
        finished_ms, stored_ms, detail_ms, agent, dns_us, connect_us, tls_us, greeting_us, auth_us,
        country, status, tag, ref_tag)
    SELECT k.scheduled_at, k.monitor_id, k.response_time_ms, k.job,
        CASE WHEN k.compact THEN k.started_ms END, CASE WHEN k.compact THEN k.finished_ms END,
        CASE WHEN k.compact THEN k.stored_ms END,
        CASE WHEN k.compact
            THEN round(extract(epoch FROM k.scheduled_at - k.ref_at) * 1000) END,
        k.agent, CASE WHEN k.compact THEN k.dns_us ELSE -1 END,
        CASE WHEN k.compact THEN k.connect_us ELSE -1 END,
        CASE WHEN k.compact THEN k.tls_us ELSE -1 END,
        CASE WHEN k.compact THEN k.greeting_us ELSE -1 END,
        CASE WHEN k.compact THEN k.auth_us ELSE -1 END,
        k.country, result_status_code(k.status), k.tag,
        CASE WHEN k.compact THEN k.ref_tag ELSE 0 END
    FROM k ORDER BY k.monitor_id, k.scheduled_at, k.country, k.tag
    ON CONFLICT (monitor_id, scheduled_at, country, tag) DO UPDATE SET
        response_time_ms = EXCLUDED.response_time_ms, started_ms = NULL, finished_ms = NULL,
        stored_ms = NULL, detail_ms = NULL, agent = EXCLUDED.agent,
        dns_us = -1, connect_us = -1, tls_us = -1, greeting_us = -1, auth_us = -1,
        status = (EXCLUDED.status | 8)::smallint, ref_tag = 0
    WHERE EXCLUDED.agent IS NOT NULL AND o.job = EXCLUDED.job
        AND (o.agent IS NULL OR (o.status & 7 = 2 AND EXCLUDED.status <> 2)
            OR (o.status & 7 = 3 AND EXCLUDED.status IN (0, 1)))
    RETURNING o.monitor_id, o.scheduled_at, o.country, o.tag, o.status, o.detail_ms,
        o.response_time_ms
), det AS (
    INSERT INTO result_details AS o (scheduled_at, monitor_id, country, tag, started_at,
        finished_at, stored_at, monitor_public_id, monitor_type, error_kind, message, banner,
        phases, tls, address, folder, hops, auth_results, capabilities, capabilities_before_tls,
        arc)
    SELECT k.scheduled_at, k.monitor_id, k.country, k.tag, k.started_at, k.finished_at,
        $3::timestamptz, k.public_id,
        k.monitor_type, k.error_kind, k.message, k.banner, k.phases, k.tls, k.address, k.folder,
        k.hops, k.auth_results,
        k.capabilities, k.capabilities_before_tls, k.arc
    FROM ins i JOIN k USING (monitor_id, scheduled_at, country, tag)
    WHERE i.detail_ms IS NULL
    ORDER BY k.monitor_id, k.scheduled_at, k.country, k.tag
    ON CONFLICT (monitor_id, scheduled_at, country, tag) DO UPDATE SET
        started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
        stored_at = EXCLUDED.stored_at, error_kind = EXCLUDED.error_kind,
        message = EXCLUDED.message, banner = EXCLUDED.banner, phases = EXCLUDED.phases,
        tls = EXCLUDED.tls, address = EXCLUDED.address, folder = EXCLUDED.folder,
        hops = EXCLUDED.hops, auth_results = EXCLUDED.auth_results,
        capabilities = EXCLUDED.capabilities,
        capabilities_before_tls = EXCLUDED.capabilities_before_tls, arc = EXCLUDED.arc
), dup AS (
    -- A row meant full that was there already (a redelivery), which compact rows of this batch
    -- may point at: its facts (the same result's) are there too, whether it was stored full or
    -- compact.
    INSERT INTO result_details (scheduled_at, monitor_id, country, tag, started_at,
        finished_at, stored_at, monitor_public_id, monitor_type, error_kind, message, banner,
        phases, tls, address, folder, hops, auth_results, capabilities, capabilities_before_tls,
        arc)
    SELECT k.scheduled_at, k.monitor_id, k.country, k.tag, k.started_at, k.finished_at,
        $3::timestamptz,
        k.public_id, k.monitor_type, k.error_kind, k.message, k.banner, k.phases, k.tls,
        k.address, k.folder, k.hops, k.auth_results,
        k.capabilities, k.capabilities_before_tls, k.arc
    FROM k WHERE NOT k.compact AND k.status = 'up' AND k.agent IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM ins i WHERE i.monitor_id =
        k.monitor_id AND i.scheduled_at = k.scheduled_at AND i.country = k.country
        AND i.tag = k.tag)
    ORDER BY k.monitor_id, k.scheduled_at, k.country, k.tag
    ON CONFLICT DO NOTHING
), roll AS (
    INSERT INTO result_rollups AS o (hour, monitor_id, country, up, down, missed, latency)
    SELECT date_trunc('hour', i.scheduled_at, 'UTC'), i.monitor_id, i.country,
        count(*) FILTER (WHERE i.status & 7 = 0), count(*) FILTER (WHERE i.status & 7 = 1),
        count(*) FILTER (WHERE i.status & 7 IN (2, 3)) - count(*) FILTER (WHERE i.status & 8 = 8),
        ARRAY[count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 0)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 1)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 2)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 3)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 4)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 5)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 6)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 7)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 8)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 9)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 10)::int,
        count(*) FILTER (WHERE i.status & 7 IN (0, 1)
            AND width_bucket(i.response_time_ms, result_latency_bounds()) = 11)::int]
    FROM ins i GROUP BY 1, 2, 3 ORDER BY 2, 1, 3
    ON CONFLICT (monitor_id, hour, country) DO UPDATE SET
        up = o.up + EXCLUDED.up, down = o.down + EXCLUDED.down,
        missed = o.missed + EXCLUDED.missed,
        latency = ARRAY[
            o.latency[1] + EXCLUDED.latency[1],
            o.latency[2] + EXCLUDED.latency[2],
            o.latency[3] + EXCLUDED.latency[3],
            o.latency[4] + EXCLUDED.latency[4],
            o.latency[5] + EXCLUDED.latency[5],
            o.latency[6] + EXCLUDED.latency[6],
            o.latency[7] + EXCLUDED.latency[7],
            o.latency[8] + EXCLUDED.latency[8],
            o.latency[9] + EXCLUDED.latency[9],
            o.latency[10] + EXCLUDED.latency[10],
            o.latency[11] + EXCLUDED.latency[11],
            o.latency[12] + EXCLUDED.latency[12]
        ]
), v AS (
    -- The rows stored, with what the per-country state takes of them; `counted`: a check that
    -- said something of the server (not missed, not inconclusive).
    SELECT i.monitor_id, k.cc AS country, i.scheduled_at, i.tag, k.job::text AS job_id, k.status,
        k.error_kind, k.message, k.finished_at, i.status & 8 = 8 AS replaced,
        i.detail_ms IS NULL AS full, k.facts, i.response_time_ms,
        CASE WHEN i.detail_ms IS NULL THEN result_phases_ms(k.phases)
            ELSE result_compact_phases_ms(k.dns_us, k.connect_us, k.tls_us, k.greeting_us,
                k.auth_us) END
            AS phases_ms,
        k.tls->>'certNotAfter' AS cert_not_after,
        k.status NOT IN ('inconclusive', 'missed') AS counted,
        k.fresh
    FROM ins i JOIN k USING (monitor_id, scheduled_at, country, tag)
), w AS (
    -- once: w, x and u are u (store_once.sql)
    SELECT v.*,
        count(*) FILTER (WHERE v.counted AND v.status = 'up') OVER later AS ups_later,
        count(*) FILTER (WHERE v.counted AND v.status <> 'up') OVER later AS fails_later,
        row_number() OVER (PARTITION BY v.monitor_id, v.country
            ORDER BY v.scheduled_at DESC, v.tag DESC) AS nth,
        first_value(v.full) OVER fullest AS full_seen,
        first_value(v.scheduled_at) OVER fullest AS full_at,
        first_value(v.tag) OVER fullest AS full_tag, first_value(v.facts) OVER fullest AS full_facts
    FROM v WINDOW later AS (PARTITION BY v.monitor_id, v.country ORDER BY v.scheduled_at, v.tag
            ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING),
        fullest AS (PARTITION BY v.monitor_id, v.country
            ORDER BY v.full DESC, v.scheduled_at DESC, v.tag DESC)
), x AS (
    SELECT w.*,
        max(w.finished_at) FILTER (WHERE w.counted) OVER key AS checked_at,
        (count(*) FILTER (WHERE w.counted AND w.status <> 'up' AND w.ups_later = 0) OVER key)::int
            AS add_fail,
        coalesce(bool_or(w.counted AND w.status = 'up') OVER key, false) AS reset_fail,
        (count(*) FILTER (WHERE w.counted AND w.status = 'up' AND w.fails_later = 0) OVER key)::int
            AS add_succ,
        coalesce(bool_or(w.counted AND w.status <> 'up') OVER key, false) AS reset_succ,
        (count(*) OVER key)::int AS stored,
        min(w.scheduled_at) FILTER (WHERE w.replaced) OVER key AS revised,
        bool_and(w.status = 'up' AND NOT w.full AND NOT w.replaced) OVER key AS routine
    FROM w WINDOW key AS (PARTITION BY w.monitor_id, w.country)
), u AS (
    -- The batch's effect on each (monitor, country) state, its rows taken in time order: the
    -- latest round (with the values a scrape shows of it), the end of the latest check that was
    -- counted, the counters' moves (a success ends a run of failures and the other way
    -- round), the latest full row (where the next compact rows point); and for the alerter's
    -- queue, the earliest round a row replaced, and whether every row was routine.
    SELECT x.monitor_id, x.country, x.status, x.error_kind, x.message, x.scheduled_at, x.job_id,
        x.checked_at, x.add_fail, x.reset_fail, x.add_succ, x.reset_succ,
        CASE WHEN x.full_seen THEN x.full_at END AS detail_at,
        CASE WHEN x.full_seen THEN x.full_tag END AS detail_tag,
        CASE WHEN x.full_seen THEN x.full_facts END AS detail_facts,
        x.response_time_ms, x.phases_ms, x.cert_not_after, x.stored, x.revised, x.routine,
        x.fresh
    FROM x WHERE x.nth = 1
), moved AS (
    -- States are locked in (monitor, country) order, as everywhere, so concurrent batches
    -- cannot deadlock; each moves as `country_state_moved` says (migration 0110).
    UPDATE monitor_country_state s SET last_status = (country_state_moved(s, u::country_state_move)).last_status,
    last_error_kind = (country_state_moved(s, u::country_state_move)).last_error_kind,
    last_message = (country_state_moved(s, u::country_state_move)).last_message,
    last_scheduled_at = (country_state_moved(s, u::country_state_move)).last_scheduled_at,
    last_job_id = (country_state_moved(s, u::country_state_move)).last_job_id,
    last_checked_at = (country_state_moved(s, u::country_state_move)).last_checked_at,
    consecutive_failures = (country_state_moved(s, u::country_state_move)).consecutive_failures,
    consecutive_successes = (country_state_moved(s, u::country_state_move)).consecutive_successes,
    last_response_time_ms = (country_state_moved(s, u::country_state_move)).last_response_time_ms,
    last_phases_ms = (country_state_moved(s, u::country_state_move)).last_phases_ms,
    last_cert_not_after = (country_state_moved(s, u::country_state_move)).last_cert_not_after,
    updated_at = $3::timestamptz,
    detail_at = (country_state_moved(s, u::country_state_move)).detail_at,
    detail_tag = (country_state_moved(s, u::country_state_move)).detail_tag,
    detail_facts = (country_state_moved(s, u::country_state_move)).detail_facts
    -- u: the batch's effect as a `country_state_move`, field by field (the cast makes it one,
    -- which the planner reads back field by field again: no row is built).
    FROM (SELECT u.monitor_id, u.country, u.status, u.error_kind, u.message, u.scheduled_at,
            u.job_id, u.checked_at, u.add_fail, u.reset_fail, u.add_succ, u.reset_succ,
            u.detail_at, u.detail_tag, u.detail_facts, u.response_time_ms, u.phases_ms,
            u.cert_not_after
        FROM u ORDER BY u.monitor_id, u.country) u
    WHERE s.monitor_id = u.monitor_id AND s.country = u.country
        -- the batch's keys beside the join, so the states are read by key whichever join is
        -- chosen (a merge join would otherwise walk the whole index in key order)
        AND s.monitor_id = ANY (ARRAY(SELECT u.monitor_id FROM u))
        AND (country_state_moved(s, u::country_state_move)).moves
), made AS (
    -- A state the statement did not find starts with the batch's effect; one another batch
    -- made meanwhile is left to `_move_lost` (the `lost` column below).
    INSERT INTO monitor_country_state (monitor_id, country, last_status, last_error_kind,
        last_message, last_scheduled_at, last_job_id, last_checked_at, consecutive_failures,
        consecutive_successes, last_response_time_ms, last_phases_ms, last_cert_not_after,
        detail_at, detail_tag, detail_facts)
    SELECT u.monitor_id, u.country, u.status, u.error_kind, u.message, u.scheduled_at, u.job_id,
        u.checked_at, u.add_fail, u.add_succ, u.response_time_ms, u.phases_ms, u.cert_not_after,
        u.detail_at, u.detail_tag, u.detail_facts
    FROM u WHERE u.fresh ORDER BY u.monitor_id, u.country
    ON CONFLICT (monitor_id, country) DO NOTHING
    RETURNING monitor_id, country
)
SELECT u.monitor_id, u.country, u.stored, u.revised, u.routine,
    CASE WHEN u.fresh AND NOT EXISTS (SELECT 1 FROM made WHERE made.monitor_id = u.monitor_id
            AND made.country = u.country)
        THEN to_json(ROW(u.monitor_id, u.country, u.status, u.error_kind, u.message,
            u.scheduled_at, u.job_id, u.checked_at, u.add_fail, u.reset_fail, u.add_succ,
            u.reset_succ, u.detail_at, u.detail_tag, u.detail_facts, u.response_time_ms,
            u.phases_ms, u.cert_not_after)::country_state_move)::text
        END AS lost
FROM u
