CREATE OR REPLACE FUNCTION public.flow_incidents_end_gone(org bigint, at timestamp with time zone)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    ended integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('flow_incidents'), org::integer);
    UPDATE flow_incidents f SET ended_at = at, due_at = NULL, pending = '{}'
    WHERE f.organization_id = org AND f.ended_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM incidents i
                      WHERE i.flow_incident_id = f.id AND i.ended_at IS NULL);
    GET DIAGNOSTICS ended = ROW_COUNT;
    RETURN ended;
END
$function$
;
