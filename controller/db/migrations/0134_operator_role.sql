-- The deployment's operators (issue 78): users who read the agents, the fleet's and the
-- oracles' health of every country and get their notices. Set only from the command line
-- (`python -m controller operator`), never through the API: an organization's owner is no
-- operator of the deployment.
ALTER TABLE users ADD COLUMN is_operator boolean NOT NULL DEFAULT false;
CREATE INDEX users_operators ON users (organization_id) WHERE is_operator;
