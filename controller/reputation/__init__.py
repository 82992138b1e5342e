"""Blocklist reputation: which lists are asked (`rules.DEFAULT_LISTS`, the operator's
`BLOCKLISTS`), what their answers mean, whether a list is healthy in a country, and when a
listing becomes a `blocklisted` finding; the answers cached per list, name and country for
every organization that depends on the same name (`store`)."""
