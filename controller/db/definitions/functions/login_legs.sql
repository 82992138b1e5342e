CREATE OR REPLACE FUNCTION public.login_legs(type text, hostname text, config jsonb)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN type = 'roundtrip'
        AND lower(nullif(config->'send'->'auth'->>'user', '')) || '@'
            || rtrim(lower(hostname), '.') = login_account(type, hostname, config)
        THEN 2 ELSE 1 END
$function$
;
