CREATE OR REPLACE FUNCTION public.monitors_search_row()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO monitor_search (monitor_id, organization_id, name, hostname)
    VALUES (NEW.id, NEW.organization_id, lower(NEW.name), lower(NEW.hostname))
    ON CONFLICT (monitor_id) DO UPDATE SET organization_id = EXCLUDED.organization_id,
        name = EXCLUDED.name, hostname = EXCLUDED.hostname;
    RETURN NULL;
END
$function$
;
