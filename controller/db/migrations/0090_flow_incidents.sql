-- Incidents as mail-flow problems (issue 66): a monitor's own outages (`incidents`, its history)
-- join one flow incident of its organization when they fail on the same server, a declared
-- dependency or a login failing the same way at the same time (controller.alerting.flows).
-- People are told of the flow incident: once when it opens, once per material change, once
-- when it ends, whatever the number of monitors.
CREATE TABLE flow_incidents (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    started_at          timestamptz NOT NULL,
    opened_at           timestamptz NOT NULL DEFAULT now(),
    ended_at            timestamptz,
    -- Every monitor that joined it (ids; a deleted monitor's stays), the countries and the
    -- causes (error kinds) it has touched.
    monitors            bigint[] NOT NULL DEFAULT '{}',
    countries           text[] NOT NULL DEFAULT '{}',
    cause_kinds         text[] NOT NULL DEFAULT '{}',
    -- Its first notice went out; how many change notices and reminders did, and when the last.
    notified            boolean NOT NULL DEFAULT false,
    changes             integer NOT NULL DEFAULT 0,
    reminders           integer NOT NULL DEFAULT 0,
    last_notified_at    timestamptz,
    -- Its next notice (the first, or a change) is due then, telling of `pending` changes:
    -- outages opening meanwhile join the same notice (INCIDENT_GROUP_WAIT_SECONDS,
    -- INCIDENT_GROUP_INTERVAL_SECONDS).
    due_at              timestamptz,
    pending             text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX flow_incidents_open ON flow_incidents (organization_id) WHERE ended_at IS NULL;
CREATE INDEX flow_incidents_due ON flow_incidents (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX flow_incidents_started ON flow_incidents (organization_id, started_at DESC, id DESC);

ALTER TABLE incidents
    ADD COLUMN flow_incident_id bigint REFERENCES flow_incidents(id) ON DELETE SET NULL;
-- The agents' messages of the round that opened it: which leg of a round trip failed.
ALTER TABLE incidents ADD COLUMN messages text[] NOT NULL DEFAULT '{}';
CREATE INDEX incidents_flow ON incidents (flow_incident_id) WHERE flow_incident_id IS NOT NULL;

-- What a monitor declares it depends on (`dependsOn`): monitor public ids and host names.
ALTER TABLE monitors ADD COLUMN depends_on text[];

-- What the world told about a mail-flow problem while it was open (a posture finding, a
-- listing, a report finding about the same monitor, host or mail domain): attached to it as
-- evidence instead of paging on its own; at most EVIDENCE_MAX rows each.
CREATE TABLE flow_incident_evidence (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flow_incident_id    bigint NOT NULL REFERENCES flow_incidents(id) ON DELETE CASCADE,
    monitor_id          bigint REFERENCES monitors(id) ON DELETE CASCADE,
    source              text NOT NULL,
    kind                text NOT NULL,
    summary             text NOT NULL,
    at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flow_incident_evidence_flow ON flow_incident_evidence (flow_incident_id, at);
