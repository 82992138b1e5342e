CREATE OR REPLACE FUNCTION public.result_pack_width(span bigint)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
    SELECT CASE WHEN span = 0 THEN 0 WHEN span < 256 THEN 1 WHEN span < 65536 THEN 2
        WHEN span < 16777216 THEN 3 ELSE 4 END
$function$
;
