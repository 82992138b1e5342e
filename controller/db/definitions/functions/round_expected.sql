CREATE OR REPLACE FUNCTION public.round_expected(allowed text[], latest text[], default_countries integer)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT coalesce(nullif(cardinality(allowed), 0), nullif(cardinality(latest), 0),
        default_countries)
$function$
;
