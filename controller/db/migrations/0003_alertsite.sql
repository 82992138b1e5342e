-- A default customer per organization, for monitors created without naming one (the
-- AlertSite-compatible API under /api/v3). The unique partial index makes "create it on first
-- use" race-safe: INSERT ... ON CONFLICT (organization_id) WHERE is_default DO NOTHING.

ALTER TABLE customers ADD COLUMN is_default boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX customers_one_default ON customers (organization_id) WHERE is_default;
