-- Mail-authentication readiness (issue 67): the records each country last read of a monitor's
-- mail domain (`spf`, `dmarc`, `dkim:<selector>`; '' for none published), since when each has
-- been as it is (a change, or a DKIM key unchanged for a year, is told from it), and the
-- scheduled time of the round that read it (an older round arriving late changes nothing).
CREATE TABLE readiness_records (
    monitor_id bigint NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    country text NOT NULL,
    what text NOT NULL,
    value text NOT NULL,
    since timestamptz NOT NULL,
    read_at timestamptz NOT NULL,
    PRIMARY KEY (monitor_id, country, what)
);
