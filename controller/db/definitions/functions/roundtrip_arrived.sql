CREATE OR REPLACE FUNCTION public.roundtrip_arrived(status text, error_kind text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT coalesce(status = 'up' OR error_kind IN ('spam', 'slow_delivery'), false)
$function$
;
