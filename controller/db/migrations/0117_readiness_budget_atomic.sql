-- The readiness budget's reservation and settling, atomic whatever the number of controller
-- replicas (issue 67).
--
-- `readiness_reserve` is the one rule of how many of `wanted` rounds an organization's hour in
-- a country may still ask: each reserves `per_round` queries until its facts arrive, and what
-- is spent plus what is reserved never exceeds `budget`. It locks the hour's row, so replicas
-- reserving at once are counted one after the other; it returns how many were reserved.
CREATE FUNCTION readiness_reserve(
    org bigint, cc text, h timestamptz, wanted integer, per_round integer, budget integer
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    b readiness_budget%ROWTYPE;
    got integer;
BEGIN
    INSERT INTO readiness_budget (organization_id, country, hour) VALUES (org, cc, h)
    ON CONFLICT DO NOTHING;
    SELECT * INTO b FROM readiness_budget
    WHERE organization_id = org AND country = cc AND hour = h FOR UPDATE;
    got := LEAST(
        wanted,
        GREATEST((budget - b.spent - GREATEST(b.asked - b.settled, 0) * per_round) / per_round, 0)
    );
    IF got > 0 THEN
        UPDATE readiness_budget SET asked = asked + got
        WHERE organization_id = org AND country = cc AND hour = h;
    END IF;
    RETURN got;
END $$;

-- The jobs whose facts were counted against the budget: a job settles once, by this key,
-- however many controllers store its result at once.
CREATE TABLE readiness_settled (
    job uuid PRIMARY KEY,
    hour timestamptz NOT NULL
);
CREATE INDEX readiness_settled_hour ON readiness_settled (hour);
