-- The countries the scheduler sent the monitor's latest round to (the listed ones, or those it
-- picked among live countries): what the alerter expects results from, and where a round goes
-- when no country has a live agent at all (it is then recorded `no_agent` there, not lost).
ALTER TABLE monitors ADD COLUMN round_countries text[];
-- A country code is what the API stores: a bad one in the table would stop every scheduler pass.
ALTER TABLE monitors ADD CONSTRAINT monitors_country_codes CHECK (
    allowed_country_codes IS NULL
    OR array_to_string(allowed_country_codes, ',') ~ '^[A-Z]{2}(,[A-Z]{2})*$'
);
