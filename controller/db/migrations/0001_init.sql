-- Organizations, users, tokens, customers, monitors: the foundation of the monitor API.

CREATE TABLE organizations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id   uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id     bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email               text NOT NULL,
    password_hash       text NOT NULL,
    role                text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'readonly')),
    is_global_supporter boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX api_tokens_expires_at ON api_tokens (expires_at);

CREATE TABLE customers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_organization_id ON customers (organization_id);

CREATE TABLE monitors (
    id                          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id                   uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id             bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    customer_id                 bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    type                        text NOT NULL CHECK (type IN ('smtp', 'imap', 'pop3')),
    name                        text NOT NULL,
    hostname                    text NOT NULL,
    port                        integer CHECK (port BETWEEN 1 AND 65535),
    status                      text NOT NULL CHECK (status IN ('active', 'maintenance', 'disabled')),
    check_interval              integer NOT NULL,
    timeout_seconds             integer NOT NULL,
    allowed_country_codes       text[],
    config                      jsonb NOT NULL DEFAULT '{}',
    notification_email          text,
    notification_phone_number   text,
    last_checked_at             timestamptz,
    next_due_at                 timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitors_org_created ON monitors (organization_id, created_at DESC, id DESC);
CREATE INDEX monitors_customer ON monitors (customer_id);
CREATE INDEX monitors_due ON monitors (next_due_at) WHERE status <> 'disabled';
