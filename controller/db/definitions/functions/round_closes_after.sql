CREATE OR REPLACE FUNCTION public.round_closes_after(check_interval integer, timeout_seconds integer)
 RETURNS interval
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT least(make_interval(secs => check_interval), interval '840 seconds')
        + make_interval(secs => timeout_seconds) + interval '5 seconds'
$function$
;
