-- A flow incident (migration 0090) ends when none of its outages is open any more. The alerter
-- ends one when its last open outage closes; this is the same rule for the outages that went
-- without closing: a monitor deleted while down takes its incidents with it, and the flow
-- incident it was the last open outage of would otherwise stay open, listed with nothing down.
-- Called by the alerter's read of an organization's open flow incidents and after a monitor is
-- deleted; takes the organization's flow incident lock itself (the one `flow_store.lock` takes,
-- re-entrant within a transaction), so it runs in the lock order every flow writer keeps.
CREATE FUNCTION flow_incidents_end_gone(org bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    ended integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('flow_incidents'), org::integer);
    UPDATE flow_incidents f SET ended_at = now(), due_at = NULL, pending = '{}'
    WHERE f.organization_id = org AND f.ended_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM incidents i
                      WHERE i.flow_incident_id = f.id AND i.ended_at IS NULL);
    GET DIAGNOSTICS ended = ROW_COUNT;
    RETURN ended;
END
$$;

-- The monitors of a flow incident whose recipients its first notice (or a change) skipped
-- because they were in maintenance, and that nobody has told of it since: each is told the
-- flow incident when its outage is wanted `down` again after the maintenance.
ALTER TABLE flow_incidents ADD COLUMN held bigint[] NOT NULL DEFAULT '{}';
