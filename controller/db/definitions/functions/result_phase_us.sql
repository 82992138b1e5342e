CREATE OR REPLACE FUNCTION public.result_phase_us(ms double precision)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN ms IS NULL THEN -1
    WHEN ms >= 0 AND ms < 2000000 AND abs(ms * 1000 - round(ms * 1000)) < 1e-6
        THEN round(ms * 1000)::integer END
$function$
;
