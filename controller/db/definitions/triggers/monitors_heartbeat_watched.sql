CREATE OR REPLACE TRIGGER monitors_heartbeat_watched AFTER INSERT ON public.monitors FOR EACH ROW WHEN ((new.type = 'heartbeat'::text)) EXECUTE FUNCTION heartbeat_watched();
