CREATE OR REPLACE FUNCTION public.result_pack_encode(vals integer[])
 RETURNS bytea
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
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
$function$
;
