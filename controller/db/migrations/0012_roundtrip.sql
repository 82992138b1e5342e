-- Round-trip monitors (issue 14): a third kind, and what its results add.
ALTER TABLE monitors DROP CONSTRAINT monitors_type_check;
ALTER TABLE monitors ADD CONSTRAINT monitors_type_check
    CHECK (type IN ('smtp', 'imap', 'pop3', 'roundtrip'));

-- Round-trip results only: the folder the message was found in, its Received hops, and the
-- receiving server's Authentication-Results (both as on the wire).
ALTER TABLE check_results ADD COLUMN folder text;
ALTER TABLE check_results ADD COLUMN hops jsonb;
ALTER TABLE check_results ADD COLUMN auth_results jsonb;
