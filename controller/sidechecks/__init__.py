"""Side checks: the lookups and tests beside the core check (mail DNS, blocklists, reverse DNS,
the open relay test, the report findings), each one package here (its rules, its store, its
findings) registered in one table (`registry.SIDE_CHECKS`), as the agent's are in
agent/sidechecks. `frame` is what every one of them is; `findings` the finding vocabulary they
and posture share; `facts_store` the table of facts each keeps by job id.
docs/architecture.md, "Adding a side check"."""
