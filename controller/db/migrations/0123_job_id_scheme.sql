-- The one database-wide fact the job id scheme of a scheduled round follows (controller/jobs/
-- scheme.py, `seeded_round`): a round scheduled at or after `seeded_from` has a seeded id, one
-- before it (or any round while it is NULL) a keyed id. Every process (each scheduler, a
-- replica claiming a round again, the alerter writing `expired` rows) reads it, so all name a
-- round alike. Controllers' watches set it (`now()` plus a lead) once every live controller
-- accepts seeded ids, and clear it when one does not (controller/jobs/scheme_store.py).
CREATE TABLE job_id_scheme (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seeded_from timestamptz
);
INSERT INTO job_id_scheme DEFAULT VALUES;
