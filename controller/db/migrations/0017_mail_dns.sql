-- Mail DNS of the monitored domain (issue 15): the domain a monitor names, and what each
-- country's agent resolved for it (MX, SPF, DMARC, MTA-STS, TLS-RPT, TLSA) on the rounds that
-- carried a DNS probe (shared.messages.MailDns as JSON; null on the others).
ALTER TABLE monitors ADD COLUMN mail_domain text;
ALTER TABLE check_results ADD COLUMN mail_dns jsonb;
