CREATE OR REPLACE FUNCTION public.result_counts_add(a integer[], b integer[])
 RETURNS integer[]
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
    SELECT ARRAY(SELECT x + y FROM unnest(a, b) AS t(x, y))
$function$
;
