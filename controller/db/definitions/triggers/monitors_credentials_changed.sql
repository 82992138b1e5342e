CREATE OR REPLACE TRIGGER monitors_credentials_changed AFTER UPDATE OF config ON public.monitors FOR EACH ROW EXECUTE FUNCTION monitors_credentials_changed();
