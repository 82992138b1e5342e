CREATE OR REPLACE FUNCTION public.scheduler_moved(moved bigint[], due timestamp with time zone[], went_to text[], skip bigint[], at timestamp with time zone, OUT confirmations boolean, OUT deferred boolean, OUT earliest timestamp with time zone, OUT unplanned boolean)
 RETURNS record
 LANGUAGE plpgsql
AS $function$
BEGIN
    PERFORM due_move(moved, due);
    UPDATE monitors m SET round_countries = u.countries
    FROM (SELECT id, string_to_array(went, ',') AS countries
          FROM unnest(moved, went_to) AS w(id, went) WHERE went IS NOT NULL) AS u
    WHERE m.id = u.id AND m.id = ANY(moved) AND m.round_countries IS DISTINCT FROM u.countries;
    SELECT w.confirmations, w.deferred, w.earliest, w.unplanned
    INTO confirmations, deferred, earliest, unplanned
    FROM scheduler_waiting(skip, at) AS w;
END $function$
;
