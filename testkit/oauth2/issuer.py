"""A loopback OAuth2 token issuer: JWT access tokens (RFC 9068) signed RS256 with a key made per
test run, via joserfc (authlib's JOSE implementation). It publishes its public key where
Dovecot's OAuth2 passdb validates tokens locally (`local_validation_key_dict`): a file
`<keys>/<azp>/RS256/<kid>` holding the PEM (Dovecot 2.3.11+)."""

import secrets
import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "https://issuer.mailprobe.test"
CLIENT_ID = "mailprobe-tests"  # the tokens' `azp`: the directory of the key Dovecot reads
SCOPE = "mail"  # Dovecot's `scope`, checked against the token's `aud`


class TokenIssuer:
    def __init__(self, keys_dir: Path) -> None:
        self.kid = secrets.token_hex(8)
        self._key = RSAKey.generate_key(2048, parameters={"kid": self.kid})
        where = keys_dir / CLIENT_ID / "RS256"
        where.mkdir(parents=True, exist_ok=True)
        (where / self.kid).write_bytes(self._key.as_pem(private=False))

    def issue(
        self,
        user: str,
        *,
        audience: str = SCOPE,
        expires_in: float = 300,
        signed_by: RSAKey | None = None,
        **claims: Any,
    ) -> str:
        """An access token for `user`; `expires_in` < 0 makes one already expired, `audience`
        another scope, `signed_by` a key Dovecot does not know (under the same kid)."""
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "sub": user,
            "email": user,
            "aud": audience,
            "azp": CLIENT_ID,
            "client_id": CLIENT_ID,
            "scope": audience,
            "iat": now if expires_in > 0 else now - 600,
            "nbf": now if expires_in > 0 else now - 600,
            "exp": int(now + expires_in),
            "jti": secrets.token_hex(8),
            **claims,
        }
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, body, signed_by or self._key)

    @staticmethod
    def stranger_key(kid: str) -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": kid})
