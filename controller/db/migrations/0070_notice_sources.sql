-- Every notice names its source (controller.notify.sources.Source): which hourly budget of its
-- organization it draws on (controller.notify.budget). Outage notices keep the budgets they had
-- (ORG_MAX_NOTIFICATIONS_PER_HOUR, ORG_MAX_SMS_PER_HOUR, ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR)
-- and nothing else draws on them; findings, report findings, account notices and the fleet's
-- each have their own, subscriber mail keeps its own.

-- A row written without a source (by a controller of an earlier version, during an upgrade)
-- draws on the outage budgets, as every notice did before; rows already queued are given the
-- source their kind says (a report finding's dedupe key starts `report:`).
ALTER TABLE notification_outbox ADD COLUMN source text NOT NULL DEFAULT 'outage'
    CHECK (source IN ('outage', 'finding', 'report', 'account', 'fleet', 'subscribers',
                      'owners'));
UPDATE notification_outbox SET source = CASE
        WHEN kind = 'finding' AND dedupe_key LIKE 'report:%' THEN 'report'
        WHEN kind IN ('finding', 'cert_expiry') THEN 'finding'
        WHEN kind IN ('credentials', 'login_cap', 'delivery', 'oauth2_token') THEN 'account'
        WHEN kind IN ('status_confirm', 'status_update') THEN 'subscribers'
        WHEN kind = 'held_back' THEN 'owners'
        ELSE 'outage'
    END
WHERE kind NOT IN ('down', 'reminder', 'recovered', 'no_data');

-- One budget row per organization, source and channel family (`email`, `sms`, `channels`: all
-- notification channels together). The rows there are were the outage notices' (all but
-- `subscribers`, which is the subscribers' e-mail).
ALTER TABLE notification_budget ADD COLUMN source text NOT NULL DEFAULT 'outage'
    CHECK (source IN ('outage', 'finding', 'report', 'account', 'fleet', 'subscribers'));
ALTER TABLE notification_budget DROP CONSTRAINT notification_budget_channel_check;
ALTER TABLE notification_budget DROP CONSTRAINT notification_budget_pkey;
UPDATE notification_budget SET source = 'subscribers', channel = 'email'
WHERE channel = 'subscribers';
ALTER TABLE notification_budget ALTER COLUMN source DROP DEFAULT;
ALTER TABLE notification_budget ADD CONSTRAINT notification_budget_channel_check
    CHECK (channel IN ('email', 'sms', 'channels'));
ALTER TABLE notification_budget ADD PRIMARY KEY (organization_id, source, channel);
