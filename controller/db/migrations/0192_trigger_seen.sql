-- The latest instant a trigger-check take was judged at (controller/monitors/limits_store.py
-- `take_trigger`): a take whose caller's instant is older (requests racing) is judged at it, so
-- a burst's takes are all taken in whatever order they reach the row.
ALTER TABLE monitors ADD COLUMN trigger_seen timestamptz;
ALTER TABLE organizations ADD COLUMN trigger_seen timestamptz;
