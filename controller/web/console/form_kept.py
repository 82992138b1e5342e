"""Secrets typed into a monitor form that the API refused for another field: the form comes back
with the user's entries, and a secret comes back only as a sealed marker, never as its text.

A marker is a Fernet token (authenticated encryption, keyed from SECRETS_KEY for this purpose
alone) of the secret bound to the session that typed it, the form it was typed into and the
field: it opens for that session, form and field only, for `TTL_SECONDS`, and anything else
(edited, moved to another field or form, replayed from another session, expired) opens as
nothing, so the field is then treated as left empty.
"""

import base64
import hashlib
from typing import Final

import msgspec
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from controller.secrets.box import SecretBox

PURPOSE: Final = "console-form-kept-secret"
TTL_SECONDS: Final = 1800
SUFFIX: Final = "~kept"  # the hidden input beside a secret field: `<field name>~kept`


class _Kept(msgspec.Struct, frozen=True):
    session: str
    form: str
    field: str
    value: str


class KeptSecrets:
    """Seals and opens markers for one session's form (`session`: its token's digest;
    `action`: the form's URL)."""

    def __init__(self, box: SecretBox, session: bytes, action: str) -> None:
        keys = [Fernet(base64.urlsafe_b64encode(k)) for k in box.subkeys(PURPOSE)]
        self._fernet = MultiFernet(keys)
        self._session = hashlib.sha256(session).hexdigest()
        self._form = action

    def seal(self, field: str, value: str) -> str:
        kept = _Kept(self._session, self._form, field, value)
        return self._fernet.encrypt(msgspec.json.encode(kept)).decode()

    def open(self, field: str, marker: str) -> str | None:
        """The secret a marker holds for this session, form and field; None otherwise."""
        if not marker:
            return None
        try:
            plain = self._fernet.decrypt(marker.encode(), ttl=TTL_SECONDS)
            kept = msgspec.json.decode(plain, type=_Kept)
        except (InvalidToken, msgspec.DecodeError, UnicodeEncodeError):
            return None
        if (kept.session, kept.form, kept.field) != (self._session, self._form, field):
            return None
        return kept.value or None
