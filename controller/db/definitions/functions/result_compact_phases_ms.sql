CREATE OR REPLACE FUNCTION public.result_compact_phases_ms(dns_us integer, connect_us integer, tls_us integer, greeting_us integer, auth_us integer)
 RETURNS double precision[]
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT ARRAY[
        CASE WHEN dns_us >= 0 THEN dns_us::float8 / 1000 END,
        CASE WHEN connect_us >= 0 THEN connect_us::float8 / 1000 END,
        CASE WHEN tls_us >= 0 THEN tls_us::float8 / 1000 END,
        CASE WHEN greeting_us >= 0 THEN greeting_us::float8 / 1000 END,
        CASE WHEN auth_us >= 0 THEN auth_us::float8 / 1000 END,
        NULL, NULL, NULL]::float8[]
$function$
;
