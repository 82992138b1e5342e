CREATE OR REPLACE FUNCTION public.monitor_due_first()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE monitors SET rounds_since = NEW.next_due_at WHERE id = NEW.monitor_id;
    RETURN NULL;
END
$function$
;
