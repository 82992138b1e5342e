"""`make sim`: the control plane in virtual time against a seeded world (issue 79)."""
