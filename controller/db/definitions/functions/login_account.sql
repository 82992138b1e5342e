CREATE OR REPLACE FUNCTION public.login_account(type text, hostname text, config jsonb)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN type = 'roundtrip' THEN
        lower(nullif(config->'receive'->>'user', '')) || '@'
            || rtrim(lower(coalesce(config->'receive'->>'hostname', '')), '.')
    ELSE
        lower(nullif(coalesce(config->'auth'->>'user', config->>'user'), '')) || '@'
            || rtrim(lower(hostname), '.')
    END
$function$
;
