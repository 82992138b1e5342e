CREATE OR REPLACE FUNCTION public.due_move(ids bigint[], due timestamp with time zone[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE monitor_due d SET next_due_at = u.due_at
    FROM unnest(ids, due) AS u(id, due_at)
    WHERE d.monitor_id = u.id AND d.monitor_id = ANY(ids);
    IF due_mirrored() THEN
        UPDATE monitors m SET next_due_at = u.due_at
        FROM unnest(ids, due) AS u(id, due_at)
        WHERE m.id = u.id AND m.id = ANY(ids) AND m.next_due_at IS DISTINCT FROM u.due_at;
    END IF;
END $function$
;
