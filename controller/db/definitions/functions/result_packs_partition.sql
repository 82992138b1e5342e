CREATE OR REPLACE FUNCTION public.result_packs_partition(part text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    EXECUTE format('ALTER TABLE %I SET (toast_tuple_target = 128)', part);
    EXECUTE format('ALTER TABLE %I ALTER COLUMN jobs SET STORAGE EXTERNAL,'
        ' ALTER COLUMN lines SET STORAGE MAIN', part);
END;
$function$
;
