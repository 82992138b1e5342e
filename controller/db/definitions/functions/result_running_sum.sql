CREATE OR REPLACE FUNCTION public.result_running_sum(deltas integer[])
 RETURNS bigint[]
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
    SELECT array_agg(s ORDER BY i) FROM (
        SELECT sum(d) OVER (ORDER BY i) AS s, i FROM unnest(deltas) WITH ORDINALITY AS u(d, i)
    ) t
$function$
;
