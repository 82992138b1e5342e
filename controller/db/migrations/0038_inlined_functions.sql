-- Result codes as expressions PostgreSQL inlines into the statements that use them (issue 24).
-- A SQL function declared STRICT is inlined only when its body is strict too, and a CASE or an
-- ARRAY[...] is not: these were called once per row through the function executor, in the
-- ingester's statement and in every read of `check_results`. Without STRICT a NULL argument
-- still gives NULL (each body gives NULL for it), and the planner replaces each call with its
-- body.
CREATE OR REPLACE FUNCTION result_country_code(cc text) RETURNS smallint
LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(cc) = 2 AND length(cc) = 2
    THEN (ascii(cc) * 256 + ascii(substr(cc, 2)))::smallint END
$$;

CREATE OR REPLACE FUNCTION result_status_code(status text) RETURNS smallint
LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE AS $$
    SELECT CASE status WHEN 'up' THEN 0 WHEN 'down' THEN 1 WHEN 'missed' THEN 2
    WHEN 'inconclusive' THEN 3 END
$$;

CREATE OR REPLACE FUNCTION result_status(code smallint) RETURNS text
LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE AS $$
    SELECT (ARRAY['up', 'down', 'missed', 'inconclusive'])[(code & 7) + 1]
$$;

CREATE OR REPLACE FUNCTION result_phase_ms(us integer) RETURNS numeric
LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE AS $$
    SELECT CASE WHEN us >= 0 THEN round(us::numeric / 1000, 3) END
$$;
