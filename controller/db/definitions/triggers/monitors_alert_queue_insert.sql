CREATE OR REPLACE TRIGGER monitors_alert_queue_insert AFTER INSERT ON public.monitors FOR EACH ROW WHEN ((new.type <> 'heartbeat'::text)) EXECUTE FUNCTION monitors_alert_queue();
