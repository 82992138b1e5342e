-- The one-row forms of the results store's batch statement (store_results.sql), for a batch
-- holding each (monitor, country) once (controller/ingest/store.py, `_ONCE`): no result of the
-- batch shares its row's key, its run of facts or its state with another, so `r` needs no
-- DISTINCT ON, and the CTEs marked "once" there, which fold a state's rows in time order with
-- window functions, take these forms, each the general one for a single row
-- (tests/pipeline/test_store_once.py stores a table of cases through both and compares every
-- row they leave).
), k AS (
    -- A run of one result: compact when it says what the state's latest full row said.
    SELECT c.*, c.follows_state AS compact, c.detail_at AS ref_at, c.detail_tag AS ref_tag
    FROM c
), u AS (
    -- The state's move by its one row stored.
    SELECT v.monitor_id, v.country, v.status, v.error_kind, v.message, v.scheduled_at, v.job_id,
        CASE WHEN v.counted THEN v.finished_at END AS checked_at,
        (v.counted AND v.status <> 'up')::int AS add_fail,
        v.counted AND v.status = 'up' AS reset_fail,
        (v.counted AND v.status = 'up')::int AS add_succ,
        v.counted AND v.status <> 'up' AS reset_succ,
        CASE WHEN v.full THEN v.scheduled_at END AS detail_at,
        CASE WHEN v.full THEN v.tag END AS detail_tag,
        CASE WHEN v.full THEN v.facts END AS detail_facts,
        v.response_time_ms, v.phases_ms, v.cert_not_after, 1 AS stored,
        CASE WHEN v.replaced THEN v.scheduled_at END AS revised,
        v.status = 'up' AND NOT v.full AND NOT v.replaced AS routine,
        v.fresh
    FROM v
