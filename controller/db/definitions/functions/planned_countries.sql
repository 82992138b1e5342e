CREATE OR REPLACE FUNCTION public.planned_countries(allowed text[], default_countries integer)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT coalesce(nullif(cardinality(allowed), 0), default_countries)
$function$
;
