CREATE OR REPLACE FUNCTION public.result_latency_bounds()
 RETURNS double precision[]
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT ARRAY[10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]::double precision[]
$function$
;
