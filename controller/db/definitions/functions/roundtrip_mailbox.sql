CREATE OR REPLACE FUNCTION public.roundtrip_mailbox(config jsonb)
 RETURNS jsonb
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT jsonb_build_object(
        'to', lower(coalesce(config->>'to', '')),
        'protocol', m.protocol,
        'hostname', lower(rtrim(coalesce(m.r->>'hostname', ''), '.')),
        'port', CASE
            WHEN jsonb_typeof(m.r->'port') = 'number' THEN (m.r->>'port')::int
            WHEN m.protocol = 'pop3' THEN CASE WHEN m.tls THEN 995 ELSE 110 END
            ELSE CASE WHEN m.tls THEN 993 ELSE 143 END
        END,
        'user', coalesce(m.r->>'user', ''),
        'subject', coalesce(m.r->'oauth2'->>'subject', '')
    )
    FROM (
        SELECT
            r,
            coalesce(nullif(r->>'protocol', ''), 'imap') AS protocol,
            coalesce(r->'tls' = 'true'::jsonb, false) AS tls
        FROM (SELECT CASE WHEN jsonb_typeof(config->'receive') = 'object'
                          THEN config->'receive' ELSE '{}'::jsonb END AS r) AS leg
    ) AS m
$function$
;
