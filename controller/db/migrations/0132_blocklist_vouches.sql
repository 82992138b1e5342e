-- A list's answer is believed only beside its RFC 5782 test entries' answers of the same round
-- (controller/sidechecks/blocklists/rules.py `vouch`): `tests` holds them (test entry → A
-- records as served), null when that round did not have both answered. A list asked once per
-- interval about its test entries could otherwise die between two asks and list everything, or
-- nothing, on its own word. Answers stored before this have none: asked again, not fresh.
ALTER TABLE blocklist_answers ADD COLUMN tests jsonb;
