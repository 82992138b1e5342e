"""The token in a domain's TLS-RPT HTTPS address (`/reports/tls/{domain}/{token}`): a keyed hash
of the organization and the domain under a key derived from SECRETS_KEY, so every replica
computes it alike and nothing is stored. It is published in DNS, so it is no secret: it routes a
report to the one organization it was given to, and keeps strangers from posting reports for a
domain by its name alone. Rotating SECRETS_KEY keeps the old tokens valid while the old key is
listed (every key's token is accepted; the first is shown)."""

import base64
import hashlib
import hmac
from collections.abc import Sequence

PURPOSE = "report-token"


def token(key: bytes, organization_id: int, domain: str) -> str:
    digest = hmac.digest(key, f"{organization_id}:{domain}".encode(), hashlib.sha256)
    return base64.b32encode(digest[:20]).decode().lower()


def matches(keys: Sequence[bytes], organization_id: int, domain: str, given: str) -> bool:
    """Whether `given` is the domain's token under any key (compared in constant time)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(token(key, organization_id, domain), given)
    return found
