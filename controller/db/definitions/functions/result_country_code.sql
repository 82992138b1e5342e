CREATE OR REPLACE FUNCTION public.result_country_code(cc text)
 RETURNS smallint
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN octet_length(cc) = 2 AND length(cc) = 2
    THEN (ascii(cc) * 256 + ascii(substr(cc, 2)))::smallint END
$function$
;
