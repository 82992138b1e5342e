CREATE OR REPLACE FUNCTION public.result_phase_value(v jsonb)
 RETURNS double precision
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN v::float8 END
$function$
;
