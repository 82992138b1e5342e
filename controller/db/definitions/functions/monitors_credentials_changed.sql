CREATE OR REPLACE FUNCTION public.monitors_credentials_changed()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF NEW.config->'auth' IS DISTINCT FROM OLD.config->'auth'
       OR NEW.config->'user' IS DISTINCT FROM OLD.config->'user'
       OR NEW.config->'password' IS DISTINCT FROM OLD.config->'password'
       OR NEW.config->'oauth2' IS DISTINCT FROM OLD.config->'oauth2'
       OR NEW.config #> '{send,auth}' IS DISTINCT FROM OLD.config #> '{send,auth}'
       OR NEW.config #> '{receive,user}' IS DISTINCT FROM OLD.config #> '{receive,user}'
       OR NEW.config #> '{receive,password}' IS DISTINCT FROM OLD.config #> '{receive,password}'
       OR NEW.config #> '{receive,oauth2}' IS DISTINCT FROM OLD.config #> '{receive,oauth2}'
    THEN
        DELETE FROM login_backoff WHERE monitor_id = NEW.id;
    END IF;
    RETURN NULL;
END
$function$
;
