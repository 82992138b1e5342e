-- When each item of an open report finding was told: a monitor keeps the newest TOLD_KEPT
-- items per finding (controller/reports/store.py `save_told`), the oldest forgotten first.
-- now() is evaluated once here: existing rows take this migration's time, without a rewrite.
ALTER TABLE report_told ADD COLUMN told_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX report_told_newest ON report_told (monitor_id, code, told_at DESC, item DESC);
