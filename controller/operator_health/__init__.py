"""Operator health: a fact of the deployment (a country's resolver, a list, a fleet check) judged
every pass, kept per (name, country) in its own table, and told to the owners of the
organizations it touches once a change has held. The oracles and the fleet each judge their own
names and say them in their own words; the step, the table's shape and the telling are here."""
