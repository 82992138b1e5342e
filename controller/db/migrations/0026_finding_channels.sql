-- Which severities of posture findings (and certificate expiry notices) go out by e-mail and
-- by SMS (controller.alerting.thresholds): null in an organization's row is the built-in
-- default (e-mail: critical and warning; SMS: none), null in a monitor's row inherits the
-- organization's.
ALTER TABLE organization_alert_settings ADD COLUMN finding_email_severities text[];
ALTER TABLE organization_alert_settings ADD COLUMN finding_sms_severities text[];
ALTER TABLE monitor_alert_settings ADD COLUMN finding_email_severities text[];
ALTER TABLE monitor_alert_settings ADD COLUMN finding_sms_severities text[];
