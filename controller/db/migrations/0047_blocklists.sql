-- Blocklist reputation (issue 58). Numbered 0047 to leave room for the other parts of issue 58
-- merged beside it.

-- What each list answered about each name, per country: one row for every organization that
-- depends on the name, so a popular address is one query per list per interval. Raw as served
-- (`a` null: the lookup failed, `error` why); read through controller/reputation/rules.py, so a
-- list's documented codes apply to answers already stored.
CREATE TABLE blocklist_answers (
    zone        text NOT NULL,
    name        text NOT NULL,
    country     text NOT NULL,
    a           text[],
    txt         text,
    error       text NOT NULL DEFAULT '',
    answered_at timestamptz NOT NULL,
    PRIMARY KEY (zone, name, country)
);
CREATE INDEX blocklist_answers_fresh ON blocklist_answers (country, answered_at);

-- The names a monitor's mail depends on as resolved from each country (its host's and MX hosts'
-- addresses, its domain), from its last round that asked the lists there.
CREATE TABLE blocklist_names (
    monitor_id  bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    country     text NOT NULL,
    names       jsonb NOT NULL,
    seen_at     timestamptz NOT NULL,
    PRIMARY KEY (monitor_id, country)
);

-- A monitor's listings: one row per (list, name) while it is listed anywhere, with its history.
-- `raised_at` is set once it held BLOCKLIST_HOLD_SECONDS (the `blocklisted` finding), and
-- `cleared_at` when no country sees it any more.
CREATE TABLE blocklist_listings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    monitor_id  bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    zone        text NOT NULL,
    name        text NOT NULL,
    since       timestamptz NOT NULL,
    countries   text[] NOT NULL,
    reason      text NOT NULL DEFAULT '',
    raised_at   timestamptz,
    cleared_at  timestamptz
);
CREATE UNIQUE INDEX blocklist_listings_one_open ON blocklist_listings (monitor_id, zone, name)
    WHERE cleared_at IS NULL;
CREATE INDEX blocklist_listings_monitor ON blocklist_listings (monitor_id, since DESC);
