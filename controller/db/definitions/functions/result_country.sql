CREATE OR REPLACE FUNCTION public.result_country(code smallint)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
    SELECT chr(code / 256) || chr(code % 256)
$function$
;
