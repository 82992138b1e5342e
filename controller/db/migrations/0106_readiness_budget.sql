-- Each organization's readiness DNS budget per country and clock hour (issue 67): `asked`, the
-- rounds whose readiness was asked in that hour (each reserves QUERIES_MAX until its facts
-- arrive), `settled` of them arrived, and `spent` the queries those reported. A round is
-- asked only while what is reserved and spent leaves room for one more
-- (controller/sidechecks/readiness/budget.py); a new hour starts from nothing.
CREATE TABLE readiness_budget (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    country text NOT NULL,
    hour timestamptz NOT NULL,
    asked integer NOT NULL DEFAULT 0,
    settled integer NOT NULL DEFAULT 0,
    spent integer NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, country, hour)
);
CREATE INDEX readiness_budget_hour ON readiness_budget (hour);
