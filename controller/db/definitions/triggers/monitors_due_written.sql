CREATE OR REPLACE TRIGGER monitors_due_written AFTER UPDATE OF next_due_at ON public.monitors FOR EACH ROW EXECUTE FUNCTION monitors_due_row();
