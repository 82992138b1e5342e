-- A report mailbox's protocol and how its TLS starts (issue 59): IMAP or POP3, implicit TLS or
-- STARTTLS (POP3: STLS) before any login; the rows before this are IMAP over implicit TLS.
ALTER TABLE report_mailboxes
    ADD COLUMN protocol text NOT NULL DEFAULT 'imap' CHECK (protocol IN ('imap', 'pop3')),
    ADD COLUMN security text NOT NULL DEFAULT 'tls' CHECK (security IN ('tls', 'starttls'));
