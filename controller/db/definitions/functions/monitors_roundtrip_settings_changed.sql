CREATE OR REPLACE FUNCTION public.monitors_roundtrip_settings_changed()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    DELETE FROM roundtrip_rounds WHERE monitor_id = NEW.id;
    RETURN NULL;
END
$function$
;
