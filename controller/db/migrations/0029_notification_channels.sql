-- Notification channels of an organization (webhook, Slack, Teams, PagerDuty, Opsgenie,
-- Alertmanager, Telegram): where its incidents are told besides a monitor's e-mail and phone.
-- `url` is sealed (`enc:v1:`, controller.secrets.box) when the URL itself is the credential
-- (Slack, Teams); `url_shown` is what responses show of it. `secret` (the webhook's signing key,
-- PagerDuty's routing key, Opsgenie's API key, Alertmanager's bearer token, Telegram's bot
-- token) is always sealed. `chat_id`: the Telegram chat a bot posts to.
CREATE TABLE notification_channels (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('webhook', 'slack', 'teams', 'pagerduty',
                                                  'opsgenie', 'alertmanager', 'telegram')),
    url             text NOT NULL,
    url_shown       text NOT NULL,
    secret          text,
    chat_id         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_channels_org ON notification_channels (organization_id, id);

-- Which channels hear of a monitor: those chosen for it, else its customer's defaults.
CREATE TABLE monitor_notification_channels (
    monitor_id  bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    channel_id  bigint NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    PRIMARY KEY (monitor_id, channel_id)
);
CREATE INDEX monitor_notification_channels_channel ON monitor_notification_channels (channel_id);
CREATE TABLE customer_notification_channels (
    customer_id bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    channel_id  bigint NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    PRIMARY KEY (customer_id, channel_id)
);
CREATE INDEX customer_notification_channels_channel ON customer_notification_channels (channel_id);

-- An outbox row for a channel: `channel` is the channel's kind, `target` its public id,
-- `channel_id` the channel, `payload` the notice as the channel is told it (its JSON event,
-- written with the notice so a retry sends the same). A deleted channel leaves its rows and
-- their history: one still pending then fails, saying so.
ALTER TABLE notification_outbox ADD COLUMN channel_id bigint
    REFERENCES notification_channels(id) ON DELETE SET NULL;
ALTER TABLE notification_outbox ADD COLUMN payload jsonb;
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_channel_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_channel_check
    CHECK (channel IN ('email', 'sms', 'webhook', 'slack', 'teams', 'pagerduty', 'opsgenie',
                       'alertmanager', 'telegram'));
CREATE INDEX notification_outbox_channel ON notification_outbox (channel_id)
    WHERE channel_id IS NOT NULL;

-- Every channel of an organization draws on one budget, `channels`
-- (ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR), apart from e-mail's, SMS's and subscribers'.
ALTER TABLE notification_budget DROP CONSTRAINT notification_budget_channel_check;
ALTER TABLE notification_budget ADD CONSTRAINT notification_budget_channel_check
    CHECK (channel IN ('email', 'sms', 'subscribers', 'channels'));
