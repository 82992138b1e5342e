CREATE OR REPLACE FUNCTION public.result_status_code(status text)
 RETURNS smallint
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE status WHEN 'up' THEN 0 WHEN 'down' THEN 1 WHEN 'missed' THEN 2
    WHEN 'inconclusive' THEN 3 END
$function$
;
