-- A heartbeat monitor is watched from when it is added, whoever adds it (issue 83): its
-- `heartbeat_watch` row comes with it, due at once (the judge makes it pending).
CREATE FUNCTION heartbeat_watched() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO heartbeat_watch (monitor_id, watched_from, due_at)
    VALUES (NEW.id, NEW.created_at, NEW.created_at)
    ON CONFLICT (monitor_id) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER monitors_heartbeat_watched AFTER INSERT ON monitors FOR EACH ROW
    WHEN (NEW.type = 'heartbeat') EXECUTE FUNCTION heartbeat_watched();
