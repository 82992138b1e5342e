CREATE OR REPLACE TRIGGER monitors_search_created AFTER INSERT ON public.monitors FOR EACH ROW EXECUTE FUNCTION monitors_search_row();
