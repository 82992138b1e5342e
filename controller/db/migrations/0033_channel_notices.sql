-- The `apprise` channel kind (an Apprise URL, sealed like Slack's and Teams' URLs), and which
-- severities of posture findings (and certificate expiry notices) go to a monitor's
-- notification channels: null in an organization's row is the built-in default (critical and
-- warning, as e-mail), null in a monitor's row inherits the organization's.
ALTER TABLE notification_channels DROP CONSTRAINT notification_channels_kind_check;
ALTER TABLE notification_channels ADD CONSTRAINT notification_channels_kind_check
    CHECK (kind IN ('webhook', 'slack', 'teams', 'pagerduty', 'opsgenie', 'alertmanager',
                    'telegram', 'apprise'));
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_channel_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_channel_check
    CHECK (channel IN ('email', 'sms', 'webhook', 'slack', 'teams', 'pagerduty', 'opsgenie',
                       'alertmanager', 'telegram', 'apprise'));
ALTER TABLE organization_alert_settings ADD COLUMN finding_channel_severities text[];
ALTER TABLE monitor_alert_settings ADD COLUMN finding_channel_severities text[];
