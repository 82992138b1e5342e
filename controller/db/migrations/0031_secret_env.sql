-- Monitors as code (issue 27): the environment variable `apply` read each secret from, by the
-- secret's config path, so `export` writes the same names back. A label: never read as a
-- variable by the controller.
ALTER TABLE monitors ADD COLUMN secret_env jsonb;
