-- New credentials end a login back-off for every kind (controller/monitors/kinds.py declares where each
-- kind's credentials sit): besides the top-level `auth` (SMTP) and `user`/`password` (IMAP/POP),
-- a round trip's send account (`send.auth`) and its mailbox (`receive.user`,
-- `receive.password`). The API keeps a stored secret's ciphertext when it is sent back masked,
-- so only a new one counts.
CREATE OR REPLACE FUNCTION monitors_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.config->'auth' IS DISTINCT FROM OLD.config->'auth'
       OR NEW.config->'user' IS DISTINCT FROM OLD.config->'user'
       OR NEW.config->'password' IS DISTINCT FROM OLD.config->'password'
       OR NEW.config #> '{send,auth}' IS DISTINCT FROM OLD.config #> '{send,auth}'
       OR NEW.config #> '{receive,user}' IS DISTINCT FROM OLD.config #> '{receive,user}'
       OR NEW.config #> '{receive,password}' IS DISTINCT FROM OLD.config #> '{receive,password}'
    THEN
        DELETE FROM login_backoff WHERE monitor_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
