-- Rules of a monitor's rounds and logins, decided once for every statement that needs them in
-- SQL; each function has its Python twin, and tests/pipeline/test_round_rules.py and
-- test_login_rules.py hold the two to one table of cases. `LANGUAGE sql` and IMMUTABLE, one
-- expression each: the planner inlines them into the statements that call them, so they cost
-- what the expressions they replace cost (the tests check that no call is left in a plan).

-- The countries a monitor's rounds go to are its listed ones (`allowed`), else those its latest
-- round went to (`latest`); neither says for a monitor that never ran or whose rounds went
-- nowhere (an empty list says nothing). The two functions below read that on the arrays,
-- without building the list (they are on the ingester's and the reads' paths).

-- Whether a country's state is of a country the monitor is checked from now (any while its
-- rounds' countries are unknown). Twin: controller.alerting.rules.checked_from.
CREATE FUNCTION checked_from(allowed text[], latest text[], country text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN cardinality(allowed) > 0 THEN country = ANY(allowed)
        WHEN cardinality(latest) > 0 THEN country = ANY(latest)
        ELSE true
    END
$$;

-- How many countries each round of a monitor is planned for, what its checks cost (budgets,
-- login need): its listed ones, else `default_countries` (DEFAULT_CHECK_COUNTRIES).
-- Twin: controller.scheduling.rules.planned_countries.
CREATE FUNCTION planned_countries(allowed text[], default_countries int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(nullif(cardinality(allowed), 0), default_countries)
$$;

-- How many countries a round expects a result from (a round is complete with that many): its
-- countries, else `default_countries` (DEFAULT_CHECK_COUNTRIES).
-- Twin: controller.alerting.rules.expected_countries (its count).
CREATE FUNCTION round_expected(allowed text[], latest text[], default_countries int)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(nullif(cardinality(allowed), 0), nullif(cardinality(latest), 0),
        default_countries)
$$;

-- How long after its scheduled time a round closes: its expiry (the next round, at most 840 s:
-- JOBS drops a job after 900 s, controller.scheduling.rules.JOB_EXPIRY_MAX), plus the
-- monitor's timeout, plus 5 s (controller.alerting.rules.CLOSE_GRACE); nothing the round has
-- not got by then will come. Twin: controller.alerting.rules.closes_at.
CREATE FUNCTION round_closes_after(check_interval int, timeout_seconds int) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(make_interval(secs => check_interval), interval '840 seconds')
        + make_interval(secs => timeout_seconds) + interval '5 seconds'
$$;

-- The account a monitor logs in to (controller.logins.cap): user@host, both in lower case, the
-- host without its trailing dot; a round trip's is its mailbox (the receive leg's user and
-- host), another kind's its login's user on its host; NULL without a user.
-- Twin: controller.scheduling.plan.account_name (which `account` hashes for a job).
CREATE FUNCTION login_account(type text, hostname text, config jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN type = 'roundtrip' THEN
        lower(nullif(config->'receive'->>'user', '')) || '@'
            || rtrim(lower(coalesce(config->'receive'->>'hostname', '')), '.')
    ELSE
        lower(nullif(coalesce(config->'auth'->>'user', config->>'user'), '')) || '@'
            || rtrim(lower(hostname), '.')
    END
$$;

-- Logins a check makes to that account: two for a round trip whose submission logs in as its
-- mailbox's user on the mailbox's host, else one. Twin: controller.scheduling.plan.legs_of.
CREATE FUNCTION login_legs(type text, hostname text, config jsonb) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN type = 'roundtrip'
        AND lower(nullif(config->'send'->'auth'->>'user', '')) || '@'
            || rtrim(lower(hostname), '.') = login_account(type, hostname, config)
        THEN 2 ELSE 1 END
$$;

-- Logins one monitor may make in a window of 600 s (controller.logins.cap.WINDOW): each
-- scheduled round (a partial one counts) and its confirmation round, plus `trigger_burst`
-- trigger-checks, from each of `countries`, `legs` logins a check.
-- Twin: controller.logins.cap.monitor_need.
CREATE FUNCTION login_need(legs int, countries int, check_interval int, trigger_burst int)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT legs * countries * (2 * ceil(600.0 / check_interval)::int + trigger_burst)
$$;
