CREATE OR REPLACE FUNCTION public.result_tag(job uuid)
 RETURNS smallint
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
    SELECT (get_byte(uuid_send(job), 0) * 256 + get_byte(uuid_send(job), 1) - 32768)::smallint
$function$
;
