CREATE OR REPLACE TRIGGER monitors_due_created AFTER INSERT ON public.monitors FOR EACH ROW EXECUTE FUNCTION monitors_due_row();
