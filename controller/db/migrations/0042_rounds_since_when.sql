-- `monitors_rounds_since` (migration 0008) acts only when a monitor's first due time is planned
-- or its interval or enablement changes, but it fired on every row of the scheduler's round
-- update (which moves `next_due_at`): a PL/pgSQL call per monitor and round that gave the row
-- back unchanged. The same trigger with those conditions as its WHEN runs only then (the
-- function is unchanged; a round's update costs PostgreSQL ~11 % less, issue 24).
DROP TRIGGER monitors_rounds_since ON monitors;
CREATE TRIGGER monitors_rounds_since BEFORE UPDATE OF status, check_interval, next_due_at
    ON monitors FOR EACH ROW
    WHEN ((OLD.next_due_at IS NULL AND NEW.next_due_at IS NOT NULL)
        OR NEW.check_interval IS DISTINCT FROM OLD.check_interval
        OR (NEW.status = 'disabled') IS DISTINCT FROM (OLD.status = 'disabled'))
    EXECUTE FUNCTION monitors_rounds_since();
