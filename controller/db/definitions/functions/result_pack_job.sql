CREATE OR REPLACE FUNCTION public.result_pack_job(job uuid, seed bytea, at_ms integer)
 RETURNS uuid
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT coalesce(job, result_seeded_job(seed, at_ms))
$function$
;
