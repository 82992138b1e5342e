"""The token in a domain's TLS-RPT HTTPS address (`/reports/tls/{domain}/{token}`): a keyed hash
of the organization, the domain and the token's generation under a key derived from SECRETS_KEY,
so every replica computes it alike and only the generation is stored. It is published in DNS,
so it is no secret: it routes a report to the one organization it was given to, and keeps
strangers from posting reports for a domain by its name alone.

A domain's token is rotated (`POST /api/report-domains/{domain}/rotate-token`, owners and
admins) by moving to the next generation: the new token is shown at once, the previous one is
still accepted for `REPORT_TOKEN_GRACE_HOURS` (time to publish the new record and for DNS
caches to forget the old), then refused like any wrong token; older generations are refused at
once. Rotating SECRETS_KEY keeps the tokens valid while the old key is listed (every key's
token is accepted; the first is shown). Pure."""

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime

PURPOSE = "report-token"


def token(key: bytes, organization_id: int, domain: str, generation: int = 0) -> str:
    """The domain's token of `generation` (0: before any rotation)."""
    said = f"{organization_id}:{domain}" + (f":{generation}" if generation else "")
    digest = hmac.digest(key, said.encode(), hashlib.sha256)
    return base64.b32encode(digest[:20]).decode().lower()


def accepted(generation: int, grace_until: datetime | None, now: datetime) -> tuple[int, ...]:
    """The generations whose token is accepted: the current, and the one before it until the
    grace is over."""
    if generation and grace_until is not None and now < grace_until:
        return (generation, generation - 1)
    return (generation,)


def matches(
    keys: Sequence[bytes],
    organization_id: int,
    domain: str,
    given: str,
    generations: Sequence[int] = (0,),
) -> bool:
    """Whether `given` is the domain's token of one of `generations` under any key (compared in
    constant time, every one compared). Compared as bytes: `given` is whatever the path held,
    and a token is ASCII, so anything else (which `hmac.compare_digest` refuses as a `str`)
    simply differs."""
    typed = given.encode("utf-8", "replace")
    found = False
    for key in keys:
        for generation in generations:
            made = token(key, organization_id, domain, generation).encode()
            found |= hmac.compare_digest(made, typed)
    return found
