CREATE OR REPLACE FUNCTION public.monitors_alert_queue()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO alert_queue (monitor_id, due_at) VALUES (NEW.id, NEW.updated_at)
    ON CONFLICT (monitor_id) DO UPDATE SET due_at = EXCLUDED.due_at
    WHERE EXCLUDED.due_at < alert_queue.due_at;
    RETURN NULL;
END
$function$
;
