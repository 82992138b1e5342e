"""Monitor secrets at rest: Fernet-encrypted strings inside the config JSON.

`SECRETS_KEY` holds one or more comma-separated keys; the first encrypts, any decrypts, so a key
can be rotated by prepending the new one.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "enc:v1:"


class SecretBoxError(Exception):
    """A stored secret could not be decrypted with the configured keys."""


class SecretBox:
    def __init__(self, keys: str) -> None:
        self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",")])

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
