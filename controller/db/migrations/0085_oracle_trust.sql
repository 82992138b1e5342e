-- Oracles checked before they are believed (issue 65).

-- The shared answers hold real answers only: a lookup that failed (a timeout, SERVFAIL, the
-- round's budget spent) is the asking round's own `unknown`, kept on its monitor's names row
-- (`blocklist_names.errors`: name → zone → why), never stored over a good answer nor shared
-- as fresh. A list's failures per country (`blocklist_failures`, the newest) only explain its
-- health when no real answer for its test entries is left.
DELETE FROM blocklist_answers WHERE a IS NULL;
ALTER TABLE blocklist_names ADD COLUMN errors jsonb NOT NULL DEFAULT '{}';
CREATE TABLE blocklist_failures (
    zone        text NOT NULL,
    country     text NOT NULL,
    error       text NOT NULL,
    failed_at   timestamptz NOT NULL,
    PRIMARY KEY (zone, country)
);

-- The agents' resolver canaries per country (names that must exist and must not, answered
-- on the rounds that resolve mail DNS or reverse DNS): the newest real answer of each.
CREATE TABLE dns_canary_answers (
    country     text NOT NULL,
    name        text NOT NULL,
    rdtype      text NOT NULL,
    want        text NOT NULL,  -- exists, absent
    found       boolean NOT NULL,
    answered_at timestamptz NOT NULL,
    PRIMARY KEY (country, name, rdtype)
);

-- Each oracle's health per country as last judged (`oracle`: `dns`, the agents' resolver for
-- mail and reverse DNS, or a list's zone), `since` when it took this state, `told` the state
-- its organizations were last told of (one notice per change).
CREATE TABLE oracle_health (
    oracle      text NOT NULL,
    country     text NOT NULL,
    state       text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    since       timestamptz NOT NULL,
    told        text NOT NULL DEFAULT 'healthy',
    PRIMARY KEY (oracle, country)
);
