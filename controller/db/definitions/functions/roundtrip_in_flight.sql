CREATE OR REPLACE FUNCTION public.roundtrip_in_flight(countries text[], answered text[], ends_at timestamp with time zone, at timestamp with time zone)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT coalesce(at < ends_at AND NOT (countries <@ coalesce(answered, '{}')), false)
$function$
;
