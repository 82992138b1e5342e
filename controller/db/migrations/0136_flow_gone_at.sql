-- `flow_incidents_end_gone` (migration 0133) takes the instant its flow incidents end at from
-- the caller's clock, as every other flow incident write does, instead of reading now(). The
-- one-argument form stays for a previous release's controllers until they are gone.
CREATE FUNCTION flow_incidents_end_gone(org bigint, at timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
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
$$;
