"""What a failed DNS lookup of a side check says: one sentence a person reads, the same for every
side check that asks the agent's resolver (mail DNS, reverse DNS, readiness)."""

import dns.exception
import dns.message
import dns.resolver

WHY_MAX = 200


def why(exc: BaseException) -> str:
    """The reason `exc` ended a lookup, at most WHY_MAX characters."""
    if isinstance(exc, dns.exception.Timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        # dnspython takes an answer it cannot use (a CNAME loop) as that server failing
        errors = exc.kwargs.get("errors") or []
        if any(isinstance(e[3], dns.message.ChainTooLong) for e in errors if len(e) > 3):
            return "the answer's CNAME chain is too long (a loop?)"
        return "no resolver answered (SERVFAIL or refused)"
    return (str(exc) or type(exc).__name__)[:WHY_MAX]
