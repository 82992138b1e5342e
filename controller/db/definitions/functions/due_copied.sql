CREATE OR REPLACE FUNCTION public.due_copied()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE monitors m SET next_due_at = d.next_due_at
    FROM monitor_due d
    WHERE d.monitor_id = m.id AND m.next_due_at IS DISTINCT FROM d.next_due_at;
    RETURN NULL;
END
$function$
;
