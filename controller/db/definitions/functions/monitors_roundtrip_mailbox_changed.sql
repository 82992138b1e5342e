CREATE OR REPLACE FUNCTION public.monitors_roundtrip_mailbox_changed()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF NEW.type = 'roundtrip'
       AND roundtrip_mailbox(NEW.config) IS DISTINCT FROM roundtrip_mailbox(OLD.config) THEN
        INSERT INTO roundtrip_delivery (monitor_id, mailbox_at) VALUES (NEW.id, NEW.updated_at)
        ON CONFLICT (monitor_id) DO UPDATE
            SET confirmed_at = NULL, not_delivered = 0, notified = false,
                mailbox_at = NEW.updated_at;
    END IF;
    RETURN NULL;
END
$function$
;
