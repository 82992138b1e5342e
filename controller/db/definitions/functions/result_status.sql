CREATE OR REPLACE FUNCTION public.result_status(code smallint)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT (ARRAY['up', 'down', 'missed', 'inconclusive'])[(code & 7) + 1]
$function$
;
