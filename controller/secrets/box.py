"""Monitor secrets at rest: Fernet-encrypted strings inside the config JSON.

A secret has two forms in the controller: `SealedSecret`, as stored (`enc:v1:` + a Fernet token;
what a Monitor's config holds), and `Secret` (shared.secret), opened by `SecretBox.opened` for a
job, which seals it again to its country (controller.secrets.seal_keys). Both show only the mask.

`SECRETS_KEY` holds one or more comma-separated keys; the first encrypts, any decrypts, so a key
can be rotated by prepending the new one.
"""

import base64
import hashlib
import hmac
from typing import TypeGuard, TypeVar

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.messages import JobConfig
from shared.secret import Secret, with_secrets

PREFIX = "enc:v1:"

ConfigT = TypeVar("ConfigT", bound=JobConfig)


class SealedSecret(Secret):
    """A secret as stored: its text is the ciphertext (`enc:v1:...`), opened only by a
    SecretBox holding SECRETS_KEY."""


def is_sealed(value: object) -> TypeGuard[str]:
    """Whether a stored JSON value is a sealed secret."""
    return isinstance(value, str) and value.startswith(PREFIX)


def stored_hook(type_: type, obj: object) -> object:
    """msgspec: a secret read from the stored JSON, sealed or (stored in clear by an old
    version or by hand) opened."""
    if type_ is Secret and isinstance(obj, str):
        return SealedSecret(obj) if is_sealed(obj) else Secret(obj)
    raise NotImplementedError(f"cannot decode {type_!r}")


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

    def opened(self, config: ConfigT) -> ConfigT:
        """`config` (as stored) with every sealed secret opened; SecretBoxError when one does
        not open."""
        return with_secrets(config, self._open_secret)

    def _open_secret(self, secret: Secret) -> Secret:
        if isinstance(secret, SealedSecret):
            return Secret(self.open(secret.reveal()))
        return secret

    def open(self, sealed: str) -> str:
        if not is_sealed(sealed):
            raise SecretBoxError("value is not a sealed secret")
        try:
            return self._fernet.decrypt(sealed[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretBoxError("secret does not decrypt with SECRETS_KEY") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()
