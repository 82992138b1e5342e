-- Which resolver a round asked the lists through (`Reputation.resolver`, issue 80): `dns`, the
-- one whose canaries vouch for mail DNS and reverse DNS, so the lists' answers in that country
-- are believed only while it is; `own`, AGENT_BLOCKLIST_RESOLVER; '' not known (older agents).
ALTER TABLE blocklist_names ADD COLUMN resolver text NOT NULL DEFAULT '';

-- A canary that got no answer is kept too (`found` null, `error` why), so a resolver that
-- answers nothing is `unknown`, not unchecked: its country's lists are then not judged apart.
ALTER TABLE dns_canary_answers ALTER COLUMN found DROP NOT NULL;
ALTER TABLE dns_canary_answers ADD COLUMN error text NOT NULL DEFAULT '';
