CREATE OR REPLACE FUNCTION public.result_phase_ms(us integer)
 RETURNS numeric
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN us >= 0 THEN round(us::numeric / 1000, 3) END
$function$
;
