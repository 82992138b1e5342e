-- An incident's delivery state (was anyone told?) is read from its outbox rows: the incidents
-- list looks them up per incident.
CREATE INDEX notification_outbox_incident ON notification_outbox (incident_id);
