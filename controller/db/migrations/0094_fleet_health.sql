-- The fleet's health per check and country as last judged (issue 66): `agents` (the country
-- has a live agent), `saturation` (its rounds recorded `saturated` stay under the threshold),
-- `features` (its live agents announce every feature the scheduler uses); `since` when it
-- took this state, `told` the state its organizations were last told of (one notice per
-- change, as `oracle_health`).
CREATE TABLE fleet_health (
    check_name  text NOT NULL,
    country     text NOT NULL,
    state       text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    since       timestamptz NOT NULL,
    told        text NOT NULL DEFAULT 'healthy',
    PRIMARY KEY (check_name, country)
);
