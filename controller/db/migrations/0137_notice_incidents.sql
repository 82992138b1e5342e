-- The outages a flow incident's notice names besides the one its outbox row was queued for: a
-- notice several monitors share is one row per address and channel (its dedupe key is the flow
-- incident's), queued for whichever member came first, and every monitor it names has been
-- notified by it (`GET …/incidents`: `notified`, `delivery`). Written by the alerter as it
-- queues the notice (controller.alerting.flow_store `named`), read per incident.
CREATE TABLE notice_incidents (
    incident_id bigint NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    outbox_id   bigint NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,
    PRIMARY KEY (incident_id, outbox_id)
);
CREATE INDEX notice_incidents_outbox ON notice_incidents (outbox_id);
