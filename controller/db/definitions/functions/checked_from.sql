CREATE OR REPLACE FUNCTION public.checked_from(allowed text[], latest text[], country text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE
        WHEN cardinality(allowed) > 0 THEN country = ANY(allowed)
        WHEN cardinality(latest) > 0 THEN country = ANY(latest)
        ELSE true
    END
$function$
;
