"""Job secrets sealed to a country: libsodium sealed boxes (X25519 + XSalsa20-Poly1305) via PyNaCl.

Each country has a key pair (`python -m deploy.mint_country` makes it with the agents' NATS
credentials). The controller holds only the public keys and seals every job config that carries a
secret to its country's key; the agents of that country hold the private key and open the config
in memory. Anyone else who reads the job (another country's agent, a subscriber, a NATS operator,
a disk backup of JOBS) holds ciphertext only. Sealed boxes are anonymous: they prove nothing about
the sender, which is the NATS account's job (only the controller may publish jobs).

Keys travel as base64 text (files or environment, like NATS credentials). A key id, the first 8
bytes of BLAKE2b of the public key in hex, rides with each job, so an agent that holds several
private keys during a rotation picks the right one, and a mismatch is a clear error.
"""

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nacl.encoding import RawEncoder
from nacl.exceptions import CryptoError
from nacl.hash import blake2b
from nacl.public import PrivateKey, PublicKey, SealedBox

KEY_ID_BYTES: Final = 8
PUBLIC_KEY_FILE: Final = re.compile(r"([A-Z]{2})\.pub")


class SealingError(Exception):
    """A key does not parse, or a sealed value does not open with the keys at hand."""


def key_id(public: PublicKey) -> str:
    return blake2b(bytes(public), digest_size=KEY_ID_BYTES, encoder=RawEncoder).hex()


def _key_bytes(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SealingError(f"{what} is not base64") from None
    if len(raw) != 32:
        raise SealingError(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


def generate() -> tuple[str, str]:
    """A new key pair as base64 text: (private, public)."""
    private = PrivateKey.generate()
    return (
        base64.b64encode(bytes(private)).decode(),
        base64.b64encode(bytes(private.public_key)).decode(),
    )


@dataclass(frozen=True)
class SealingKey:
    """A country's public key: seals for that country's agents."""

    public: PublicKey
    id: str

    @classmethod
    def parse(cls, text: str) -> "SealingKey":
        public = PublicKey(_key_bytes(text, "public key"))
        return cls(public, key_id(public))

    def seal(self, plain: bytes) -> str:
        return base64.b64encode(SealedBox(self.public).encrypt(plain)).decode()


class OpeningKeys:
    """An agent's private keys (usually one; two during a rotation), by key id."""

    def __init__(self, private_keys: Iterable[str]) -> None:
        self._boxes: dict[str, SealedBox[PrivateKey]] = {}
        for text in private_keys:
            private = PrivateKey(_key_bytes(text, "private key"))
            self._boxes[key_id(private.public_key)] = SealedBox(private)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._boxes)

    def open(self, sealed: str, sealed_key_id: str | None) -> bytes:
        box = self._boxes.get(sealed_key_id or "")
        if box is None:
            have = ", ".join(sorted(self._boxes)) or "none"
            raise SealingError(f"sealed for key {sealed_key_id or '?'}, this agent holds {have}")
        try:
            return box.decrypt(base64.b64decode(sealed, validate=True))
        except (CryptoError, binascii.Error, ValueError):
            raise SealingError(f"sealed value does not open with key {sealed_key_id}") from None


def read_public_keys(directory: str | Path) -> dict[str, SealingKey]:
    """The countries' public keys in `directory`: one file `CC.pub` per country holding one
    base64 key (what `deploy.mint_country` writes); files not ending in `.pub` are left alone.
    Raises SealingError naming the file, OSError when the directory cannot be read."""
    keys: dict[str, SealingKey] = {}
    for path in sorted(Path(directory).iterdir()):
        if not path.name.endswith(".pub"):
            continue
        named = PUBLIC_KEY_FILE.fullmatch(path.name)
        if named is None:
            raise SealingError(f"{path.name} is not named CC.pub (an upper-case country code)")
        try:
            keys[named.group(1)] = SealingKey.parse(path.read_text(errors="replace"))
        except SealingError as exc:
            raise SealingError(f"{path.name}: {exc}") from None
    return keys
