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

-- The dedupe key of the first notice an incident's e-mail follows up (the first `down` e-mail
-- to that address about the incident or its flow incident): its `In-Reply-To` and `References`
-- name that notice's Message-ID, so a mail client shows one thread per incident. NULL for the
-- first notice and for other channels.
ALTER TABLE notification_outbox ADD COLUMN thread_key text;
