-- A round trip's mailbox, what its delivery confirmation is of (controller.roundtrips.rules):
-- `to`, and the receive leg's protocol, server, port and login (with an OAuth2 grant acting as
-- another mailbox, its `subject`). Spelt one way, so that two configs saying the same thing
-- give the same value: defaults applied (protocol `imap`; a null port the protocol's own for
-- its `tls`), `to` and the server's name in lower case, the name without a trailing dot.
-- Nothing else of the config is the mailbox: not its secrets (sealed anew at each write), TLS
-- options, folders nor the send leg. `controller.roundtrips.rules.mailbox` is its Python twin;
-- tests/pipeline/test_roundtrip_mailbox.py holds the two to one table of cases.
CREATE FUNCTION roundtrip_mailbox(config jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'to', lower(coalesce(config->>'to', '')),
        'protocol', m.protocol,
        'hostname', lower(rtrim(coalesce(m.r->>'hostname', ''), '.')),
        'port', CASE
            WHEN jsonb_typeof(m.r->'port') = 'number' THEN (m.r->>'port')::int
            WHEN m.protocol = 'pop3' THEN CASE WHEN m.tls THEN 995 ELSE 110 END
            ELSE CASE WHEN m.tls THEN 993 ELSE 143 END
        END,
        'user', coalesce(m.r->>'user', ''),
        'subject', coalesce(m.r->'oauth2'->>'subject', '')
    )
    FROM (
        SELECT
            r,
            coalesce(nullif(r->>'protocol', ''), 'imap') AS protocol,
            coalesce(r->'tls' = 'true'::jsonb, false) AS tls
        FROM (SELECT CASE WHEN jsonb_typeof(config->'receive') = 'object'
                          THEN config->'receive' ELSE '{}'::jsonb END AS r) AS leg
    ) AS m
$$;

-- A new mailbox has shown nothing yet: its record starts over. Any other write (the same
-- mailbox spelt another way, a secret sealed anew, the send leg, folders) keeps it.
CREATE OR REPLACE FUNCTION monitors_roundtrip_mailbox_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF roundtrip_mailbox(NEW.config) IS DISTINCT FROM roundtrip_mailbox(OLD.config) THEN
        DELETE FROM roundtrip_delivery WHERE monitor_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

-- A round trip's message counts against its caps from when it is sent until its result says
-- no server took it (controller.roundtrips.rules.accepted): `job_id`, the job that sends it
-- (NULL: sent by an older controller, counted); `accepted`, NULL until the job's result is
-- stored, then whether a server may hold the message. A round's messages are taken together
-- (its later logins' jobs included), so its deferred jobs find theirs by job id.
ALTER TABLE mail_sends ADD COLUMN job_id text;
ALTER TABLE mail_sends ADD COLUMN accepted boolean;
CREATE INDEX mail_sends_job ON mail_sends (job_id) WHERE job_id IS NOT NULL;
