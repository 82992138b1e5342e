CREATE OR REPLACE FUNCTION public.scheduler_earliest(skip bigint[])
 RETURNS timestamp with time zone
 LANGUAGE sql
 STABLE
AS $function$
    SELECT least(
        (SELECT d.next_due_at FROM monitor_due d JOIN monitors m ON m.id = d.monitor_id
         WHERE m.status <> 'disabled' AND d.monitor_id <> ALL(skip) AND d.next_due_at IS NOT NULL
         ORDER BY d.next_due_at LIMIT 1),
        (SELECT min(publish_at) FROM deferred_jobs)
    )
$function$
;
