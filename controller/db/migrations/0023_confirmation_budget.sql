-- Confirmation rounds share CONFIRM_ROUNDS_PER_MINUTE fairly between organizations: requests
-- wait (`sent_at` null) until the scheduler gives them a slot of this budget (controller.scheduling.confirm).
-- `tat`: when the budget is whole again (GCRA); null: never used. One row; a replica claiming
-- holds its lock, the others skip that pass.
CREATE TABLE confirmation_budget (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    tat     timestamptz
);
INSERT INTO confirmation_budget DEFAULT VALUES;

-- When a round of the monitor last carried its `mail_domain` (the agents resolved its mail
-- DNS): a trigger-check or confirmation round asks again only past TRIGGER_DNS_FLOOR of it
-- (controller.scheduling.rules.trigger_dns).
ALTER TABLE monitors ADD COLUMN mail_dns_at timestamptz;
