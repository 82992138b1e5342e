-- A scheduler pass's closing work, one statement each (issue 70: a pass's cost is mostly per
-- statement, and a routine pass is a transaction of a few).
--
-- `scheduler_earliest` is the one rule of when a scheduler has something to send next: the
-- earliest due time of a monitor not disabled and not in `skip` (its OAuth2 token is being
-- fetched), or of a deferred login.
CREATE FUNCTION scheduler_earliest(skip bigint[]) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT min(next_due_at) FROM monitors WHERE status <> 'disabled' AND id <> ALL(skip)),
        (SELECT min(publish_at) FROM deferred_jobs)
    )
$$;

-- What else than due rounds a pass has to do at `at`, each part through an index: confirmation
-- rounds asked for, deferred logins due, when the next pass is due (`scheduler_earliest`), and
-- whether a monitor waits for its first due time (new, or its interval or status just changed).
CREATE FUNCTION scheduler_waiting(
    skip bigint[], at timestamptz,
    OUT confirmations boolean, OUT deferred boolean, OUT earliest timestamptz,
    OUT unplanned boolean
) LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM confirmation_rounds WHERE sent_at IS NULL),
        EXISTS (SELECT 1 FROM deferred_jobs WHERE publish_at <= at),
        scheduler_earliest(skip),
        EXISTS (SELECT 1 FROM monitors WHERE status <> 'disabled' AND next_due_at IS NULL)
$$;

-- A batch of due rounds done: each monitor's next due time moved (and, where `went_to` is not
-- NULL, the comma-joined countries its round went to), then `scheduler_waiting` as it stands
-- after that move, in one round trip.
CREATE FUNCTION scheduler_moved(
    moved bigint[], due timestamptz[], went_to text[], skip bigint[], at timestamptz,
    OUT confirmations boolean, OUT deferred boolean, OUT earliest timestamptz,
    OUT unplanned boolean
) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE monitors m SET next_due_at = u.due_at,
        round_countries = coalesce(string_to_array(u.went, ','), m.round_countries)
    FROM unnest(moved, due, went_to) AS u(id, due_at, went)
    WHERE m.id = u.id;
    SELECT w.confirmations, w.deferred, w.earliest, w.unplanned
    INTO confirmations, deferred, earliest, unplanned
    FROM scheduler_waiting(skip, at) AS w;
END $$;
