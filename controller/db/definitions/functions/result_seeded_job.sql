CREATE OR REPLACE FUNCTION public.result_seeded_job(seed bytea, at_ms integer)
 RETURNS uuid
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
    SELECT overlay(overlay(encode(substring(sha256(seed || int4send(at_ms)) FROM 1 FOR 16), 'hex')
        PLACING '8' FROM 13 FOR 1) PLACING '8' FROM 17 FOR 1)::uuid
$function$
;
