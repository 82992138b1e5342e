-- One history line per attempt of a notification and outcome: a write-back tried again after
-- the answer to its commit was lost (the primary gone mid-commit) writes no second line.
-- Lines already written twice keep their first.
DELETE FROM alert_history h USING alert_history d
WHERE d.outbox_id = h.outbox_id AND d.attempt = h.attempt AND d.status = h.status
  AND d.id < h.id;
CREATE UNIQUE INDEX alert_history_attempt ON alert_history (outbox_id, attempt, status);
