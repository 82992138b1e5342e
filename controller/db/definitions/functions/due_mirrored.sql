CREATE OR REPLACE FUNCTION public.due_mirrored()
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$
    SELECT coalesce((SELECT seeded_from IS NULL FROM job_id_scheme), true)
        OR NOT (current_setting('application_name') LIKE 'mailprobe controller % ids3')
$function$
;
