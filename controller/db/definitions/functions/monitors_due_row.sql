CREATE OR REPLACE FUNCTION public.monitors_due_row()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.type <> 'heartbeat' THEN
            INSERT INTO monitor_due (monitor_id, next_due_at) VALUES (NEW.id, NEW.next_due_at);
        END IF;
    ELSIF pg_trigger_depth() = 1 THEN
        UPDATE monitor_due SET next_due_at = NEW.next_due_at
        WHERE monitor_id = NEW.id AND next_due_at IS DISTINCT FROM NEW.next_due_at;
    END IF;
    RETURN NULL;
END
$function$
;
