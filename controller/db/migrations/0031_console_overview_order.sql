-- The console's overview lists an organization's monitors by name (lower(name), id), a page at
-- a time: with this index a page is read in order and stops at its LIMIT, at 100,000 monitors
-- as at ten.
CREATE INDEX monitors_org_name ON monitors (organization_id, lower(name), id);
