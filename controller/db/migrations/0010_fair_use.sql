-- Fair use: trigger-check allowances, per monitor and per organization (controller.monitors.limits_store).
-- `trigger_tat` is when the allowance is whole again (GCRA's "theoretical arrival time"); null:
-- never used, whole. A trigger-check moves it later in one UPDATE, so replicas share it.
ALTER TABLE monitors ADD COLUMN trigger_tat timestamptz;
ALTER TABLE organizations ADD COLUMN trigger_tat timestamptz;
