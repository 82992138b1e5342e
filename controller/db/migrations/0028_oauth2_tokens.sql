-- OAuth2 logins (controller/oauth2): each grant's latest access token, cached until shortly
-- before it expires so every replica's scheduler shares it; a refresh token the endpoint
-- rotated (it supersedes the one the monitor was given); the endpoint's latest refusal, and
-- whether the owners were told of it. `grant_key` is a keyed hash of the monitor, the login
-- and everything the grant is (endpoint, client, scopes, its sealed secrets): a new grant is
-- a new key. Tokens are sealed with SECRETS_KEY like every monitor secret.
CREATE TABLE oauth2_tokens (
    grant_key       text PRIMARY KEY,
    monitor_id      bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    access_token    text,
    expires_at      timestamptz,
    refresh_token   text,
    error           text,
    error_message   text,
    retry_at        timestamptz,
    told            boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth2_tokens_monitor ON oauth2_tokens (monitor_id);

-- Calls to token endpoints per organization and clock hour (OAUTH2_TOKEN_CALLS_PER_HOUR).
CREATE TABLE oauth2_token_calls (
    organization_id bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    hour            timestamptz NOT NULL,
    calls           integer NOT NULL,
    PRIMARY KEY (organization_id, hour)
);

-- A new OAuth2 grant is new credentials too: it ends a login back-off (SMTP's and a round
-- trip's send grant sit inside `auth`, already compared).
CREATE OR REPLACE FUNCTION monitors_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.config->'auth' IS DISTINCT FROM OLD.config->'auth'
       OR NEW.config->'user' IS DISTINCT FROM OLD.config->'user'
       OR NEW.config->'password' IS DISTINCT FROM OLD.config->'password'
       OR NEW.config->'oauth2' IS DISTINCT FROM OLD.config->'oauth2'
       OR NEW.config #> '{send,auth}' IS DISTINCT FROM OLD.config #> '{send,auth}'
       OR NEW.config #> '{receive,user}' IS DISTINCT FROM OLD.config #> '{receive,user}'
       OR NEW.config #> '{receive,password}' IS DISTINCT FROM OLD.config #> '{receive,password}'
       OR NEW.config #> '{receive,oauth2}' IS DISTINCT FROM OLD.config #> '{receive,oauth2}'
    THEN
        DELETE FROM login_backoff WHERE monitor_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

-- `oauth2_token`: the owners' notice that a login's token endpoint gave no token.
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_kind_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_kind_check
    CHECK (kind IN ('down', 'reminder', 'recovered', 'finding', 'cert_expiry', 'credentials',
                    'held_back', 'login_cap', 'delivery', 'no_data',
                    'status_confirm', 'status_update', 'oauth2_token'));
