CREATE OR REPLACE FUNCTION public.heartbeat_watched()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO heartbeat_watch (monitor_id, watched_from, due_at)
    VALUES (NEW.id, NEW.created_at, NEW.created_at)
    ON CONFLICT (monitor_id) DO NOTHING;
    RETURN NULL;
END
$function$
;
