CREATE OR REPLACE FUNCTION public.api_calls_release(job_ids uuid[])
 RETURNS void
 LANGUAGE sql
AS $function$
    DELETE FROM api_calls WHERE job = ANY (job_ids)
$function$
;
