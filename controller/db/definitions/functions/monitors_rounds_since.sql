CREATE OR REPLACE FUNCTION public.monitors_rounds_since()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    NEW.rounds_since := NEW.updated_at;
    RETURN NEW;
END
$function$
;
