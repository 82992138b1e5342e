"""RFC 7523's JWT bearer assertion (a Google service account acting as a mailbox through
domain-wide delegation), signed by joserfc: no JWT code of our own."""

from datetime import datetime
from typing import Final

from joserfc import jwt
from joserfc.jwk import RSAKey

from controller.monitors.oauth2_grants import private_key

LIFETIME_S: Final = 300  # Google accepts at most an hour; the assertion is used at once


def signed(
    pem: str, issuer: str, subject: str, audience: str, scopes: list[str], now: datetime
) -> str:
    """The assertion: `iss` the service account (the grant's client id), `sub` the mailbox,
    `aud` the token endpoint, `scope` the scopes (Google's claim), issued at `now` (the
    caller's clock) and valid for LIFETIME_S."""
    key = private_key(pem)
    issued = int(now.timestamp())
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "scope": " ".join(scopes),
        "iat": issued,
        "exp": issued + LIFETIME_S,
    }
    alg = "RS256" if isinstance(key, RSAKey) else "ES256"
    return jwt.encode({"alg": alg, "typ": "JWT"}, claims, key)
