-- Login security: users that can be disabled, login throttling shared by the replicas, the
-- addresses each user logged in from (their lockout is counted apart), revocation by user.

-- Set: the user cannot log in and none of their tokens is accepted.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- Revoking every token of a user, and the cascade when a user is deleted.
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

-- One row per throttled key: a client address, an account, or an account from one of its known
-- addresses. `key` is an HMAC (never the e-mail as typed: people type passwords there too).
-- `attempts` counts attempts that did not succeed; `locked_until` refuses attempts until then;
-- the row is forgotten once `expires_at` has passed.
CREATE TABLE login_throttle (
    key          bytea PRIMARY KEY,
    attempts     integer NOT NULL,
    locked_until timestamptz,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX login_throttle_expires_at ON login_throttle (expires_at);

-- Addresses a user logged in from successfully: failures from there are counted apart from the
-- account's, so nobody elsewhere can lock a user out of the places they use.
CREATE TABLE login_addresses (
    user_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    address       text NOT NULL,
    last_login_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, address)
);
CREATE INDEX login_addresses_last_login_at ON login_addresses (last_login_at);
