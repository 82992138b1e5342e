CREATE OR REPLACE FUNCTION public.login_need(legs integer, countries integer, check_interval integer, trigger_burst integer)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT legs * countries * (2 * ceil(600.0 / check_interval)::int + trigger_burst)
$function$
;
