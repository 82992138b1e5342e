"""Monitor secrets at rest: Fernet-encrypted strings inside the config JSON.

`SECRETS_KEY` holds one or more comma-separated keys; the first encrypts, any decrypts, so a key
can be rotated by prepending the new one.
"""

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "enc:v1:"


class SecretBoxError(Exception):
    """A stored secret could not be decrypted with the configured keys."""


class SecretBox:
    def __init__(self, keys: str) -> None:
        self._keys = [k.strip() for k in keys.split(",")]
        self._fernet = MultiFernet([Fernet(k.encode()) for k in self._keys])

    def subkeys(self, purpose: str) -> list[bytes]:
        """One HMAC key for `purpose` per configured key, the encrypting one first: other
        secrets derived from SECRETS_KEY, so operators keep (and rotate) a single key."""
        return [
            hmac.digest(base64.urlsafe_b64decode(k), purpose.encode(), hashlib.sha256)
            for k in self._keys
        ]

    def seal(self, plain: str) -> str:
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            raise SecretBoxError("value is not a sealed secret")
        try:
            return self._fernet.decrypt(sealed[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretBoxError("secret does not decrypt with SECRETS_KEY") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()
