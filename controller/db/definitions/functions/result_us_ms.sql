CREATE OR REPLACE FUNCTION public.result_us_ms(us integer)
 RETURNS double precision
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
    SELECT (us::numeric / 1000)::double precision
$function$
;
