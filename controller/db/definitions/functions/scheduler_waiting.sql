CREATE OR REPLACE FUNCTION public.scheduler_waiting(skip bigint[], at timestamp with time zone, OUT confirmations boolean, OUT deferred boolean, OUT earliest timestamp with time zone, OUT unplanned boolean)
 RETURNS record
 LANGUAGE sql
 STABLE
AS $function$
    SELECT EXISTS (SELECT 1 FROM confirmation_rounds WHERE sent_at IS NULL),
        EXISTS (SELECT 1 FROM deferred_jobs WHERE publish_at <= at),
        scheduler_earliest(skip),
        EXISTS (SELECT 1 FROM monitor_due d JOIN monitors m ON m.id = d.monitor_id
                WHERE d.next_due_at IS NULL AND m.status <> 'disabled')
$function$
;
