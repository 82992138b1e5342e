CREATE OR REPLACE FUNCTION public.result_phases_ms(phases jsonb)
 RETURNS double precision[]
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN jsonb_typeof(phases) = 'object' THEN ARRAY[
        result_phase_value(phases->'dnsMs'), result_phase_value(phases->'connectMs'),
        result_phase_value(phases->'tlsMs'), result_phase_value(phases->'greetingMs'),
        result_phase_value(phases->'authMs'), result_phase_value(phases->'submitMs'),
        result_phase_value(phases->'deliveryMs'), result_phase_value(phases->'fetchMs')] END
$function$
;
