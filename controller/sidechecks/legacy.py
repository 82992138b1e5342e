"""Results of agents that predate `sideChecks`: they send each side check's facts in a field of
the result of its own (`mailDns`, `reputation`, `reverseDns`, `relay`). `fold` moves them under
their side check's name, so everything after the ingester's decoding reads `sideChecks` alone.
Only the side checks older than the frame have such a field; this module goes once no agent of
a version before it is left."""

from typing import Final, Protocol

# The result's attribute an older agent fills → the side check its facts are.
FIELDS: Final = {
    "mail_dns": "mail_dns",
    "reputation": "blocklists",
    "reverse_dns": "reverse_dns",
    "relay": "relay",
}


class _Folding(Protocol):
    side_checks: dict[str, object]


def fold(result: _Folding) -> None:
    """Move `result`'s legacy side fields into its `side_checks` (a name already there wins:
    an agent that sends both is a newer one)."""
    for attr, name in FIELDS.items():
        value = getattr(result, attr, None)
        if value is not None:
            result.side_checks.setdefault(name, value)
            setattr(result, attr, None)
