"""Job configs sealed to their country: which configs need it, and the countries' public keys.

The keys are the `CC.pub` files of SEAL_PUBLIC_KEYS_DIR (shared.sealing). They are read at start
and again every `RELOAD_EVERY_S` while the scheduler works, so a rotation or a new country needs
no restart; a change that does not parse leaves the keys as they were, with an error logged.
"""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

from shared.guards import BrokenInvariant
from shared.messages import ImapPopConfig, JobConfig, RoundTripConfig, SmtpConfig
from shared.sealing import SealingError, SealingKey, read_public_keys
from shared.secret import secrets_in

log = structlog.get_logger(__name__)

RELOAD_EVERY_S: Final = 5.0


def carries_credentials(config: JobConfig) -> bool:
    """Whether a job's config travels sealed: it holds a secret, in whatever field is typed
    `Secret` (one stored in clear, by an old version or by hand, too), or a user name."""
    if any(secret for _, secret in secrets_in(config)):
        return True
    if isinstance(config, RoundTripConfig):
        # The addresses and the mailbox say whose mail is probed: never in clear either.
        return True
    if isinstance(config, SmtpConfig):
        return config.auth is not None and bool(config.auth.user)
    if not isinstance(config, ImapPopConfig):
        raise BrokenInvariant(
            "seal_keys.carries_credentials: expected isinstance(config, ImapPopConfig)"
        )
    return bool(config.user)


class CountryKeys:
    """The public sealing key of each country that has one."""

    def __init__(
        self,
        directory: str | None,
        *,
        reload_every_s: float = RELOAD_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._reload_every_s = reload_every_s
        self._clock = clock
        self._checked_at = clock()
        self._failure = ""  # the last reload error, logged once
        self._keys: dict[str, SealingKey] = {}
        if self.directory is None:
            log.warning("SEAL_PUBLIC_KEYS_DIR is not set: jobs with credentials are sent nowhere")
            return
        self._keys = read_public_keys(self.directory)
        log.info("sealing keys loaded", directory=str(self.directory), **self._describe())

    def get(self, country: str) -> SealingKey | None:
        return self._keys.get(country)

    async def refresh(self) -> None:
        """Read the files again once `reload_every_s` has passed since the last time: in a
        thread, as every country's file takes some milliseconds, too long for the event loop."""
        if self.directory is None or self._clock() - self._checked_at < self._reload_every_s:
            return
        self._checked_at = self._clock()
        await asyncio.to_thread(self._reload, self.directory)

    def missing(self, country: str) -> str:
        """Why `country` has no key, for a person (without the controller's paths)."""
        if self.directory is None:
            return "SEAL_PUBLIC_KEYS_DIR is not set on the controller"
        return f"{country}.pub is missing from SEAL_PUBLIC_KEYS_DIR"

    def _reload(self, directory: Path) -> None:
        """Read every file (file times are too coarse to tell a quick rewrite); keep the keys
        when that fails, and say so once per distinct failure."""
        try:
            keys = read_public_keys(directory)
        except (SealingError, OSError) as exc:
            if str(exc) != self._failure:
                log.error("sealing keys not reloaded; the previous ones stay", error=str(exc))
            self._failure = str(exc)
            return
        self._failure = ""
        before = self._keys
        if {cc: k.id for cc, k in keys.items()} == {cc: k.id for cc, k in before.items()}:
            return
        self._keys = keys
        log.info(
            "sealing keys reloaded",
            directory=str(directory),
            changed=sorted(cc for cc, k in keys.items() if cc in before and before[cc].id != k.id),
            added=sorted(keys.keys() - before.keys()),
            removed=sorted(before.keys() - keys.keys()),
            **self._describe(),
        )

    def _describe(self) -> dict[str, object]:
        return {"countries": len(self._keys), "key_ids": {cc: k.id for cc, k in self._keys.items()}}
