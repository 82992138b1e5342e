CREATE OR REPLACE TRIGGER monitors_roundtrip_mailbox_changed AFTER UPDATE OF config ON public.monitors FOR EACH ROW EXECUTE FUNCTION monitors_roundtrip_mailbox_changed();
