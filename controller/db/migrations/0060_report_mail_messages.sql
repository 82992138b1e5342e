-- The messages of a report mailbox whose read began and whose move has not yet been seen done
-- (issue 64): a message is noted before its body is fetched, so one that a reader never got
-- through (the controller killed mid-parse, the connection dropped mid-message, a server
-- sending more than it declared) is moved aside unread at a later read, never read forever.
-- A row goes once its message left the folder (moved, or deleted at POP3's QUIT), or at the
-- next read of its folder once the message is no longer there.
CREATE TABLE report_mail_messages (
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    mailbox         text NOT NULL,  -- protocol, user, server and folder, as read
    message         text NOT NULL,  -- IMAP: UIDVALIDITY:UID; POP3: its UIDL
    state           text NOT NULL CHECK (state IN ('reading', 'taken', 'refused')),
    reads           integer NOT NULL DEFAULT 1 CHECK (reads >= 1),
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, mailbox, message)
);
