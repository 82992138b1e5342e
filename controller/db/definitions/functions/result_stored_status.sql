CREATE OR REPLACE FUNCTION public.result_stored_status(status text, error_kind text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE
        WHEN status = 'down' AND error_kind IN ('auth_backoff', 'delivery_backoff',
            'domain_capped', 'expired', 'login_capped', 'mailbox_unconfirmed', 'no_agent',
            'no_seal_key', 'oauth2_token', 'overdue', 'preempted', 'saturated') THEN 'missed'
        WHEN status = 'inconclusive' OR (status = 'down' AND error_kind = 'inconclusive')
            THEN 'inconclusive'
        ELSE status END
$function$
;
