"""When a cached access token may go into a job, when a refused grant is asked again, which
grant a token belongs to, and how a job logs in with it. Pure: no I/O."""

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import msgspec

from controller.monitors.kinds import Kind
from controller.monitors.oauth2_grants import Grant, as_stored
from shared.messages import ImapPopConfig, JobConfig, RoundTripConfig, SmtpConfig
from shared.secret import NO_SECRET, Secret

GRANT_KEY_PURPOSE: Final = "mailprobe oauth2 grants"
# A token goes into a job only while it lives past the job's expiry and its timeout by this.
MARGIN: Final = timedelta(seconds=60)
# A token without `expires_in` is taken to live this long (RFC 6749 makes it optional).
DEFAULT_LIFETIME: Final = timedelta(minutes=5)
# After the endpoint refused the grant (`invalid_grant`, `invalid_client`, ...), it is asked
# again only after this, or at once once the grant changes (a new grant is a new key); after
# it failed to answer, after the shorter wait.
REFUSED_RETRY: Final = timedelta(minutes=15)
UNREACHABLE_RETRY: Final = timedelta(minutes=1)
OAUTH2_TOKEN: Final = "oauth2_token"  # the missed kind of a round without a token


def grant_key(key: bytes, monitor_id: int, path: str, grant: Grant) -> str:
    """The grant's cache key: a keyed hash of the monitor, the login and the grant as stored
    (its sealed secrets included), so any change to it is a new key."""
    body = msgspec.json.encode([monitor_id, path, as_stored(grant)], order="sorted")
    return hmac.digest(key, body, hashlib.sha256).hex()


def usable(expires_at: datetime | None, needed_until: datetime) -> bool:
    """Whether a token expiring at `expires_at` still serves a job that may run until
    `needed_until`."""
    return expires_at is not None and expires_at > needed_until + MARGIN


def expires_at(now: datetime, expires_in: float | None) -> datetime:
    lifetime = DEFAULT_LIFETIME if expires_in is None else timedelta(seconds=max(0, expires_in))
    return now + lifetime


def retry_at(now: datetime, refused: bool) -> datetime:
    return now + (REFUSED_RETRY if refused else UNREACHABLE_RETRY)


def protocol(kind: Kind, path: str, config: JobConfig, monitor_type: str) -> str:
    """The protocol a login's token is for (`smtp`, `imap`, `pop3`): its preset's scope."""
    if isinstance(config, RoundTripConfig):
        return "smtp" if path.startswith("send.") else config.receive.protocol or "imap"
    return "smtp" if isinstance(config, SmtpConfig) else monitor_type


def user(config: JobConfig, path: str) -> str:
    """The user name of the login whose grant sits at `path`."""
    if isinstance(config, RoundTripConfig):
        if path.startswith("send."):
            return config.send.auth.user if config.send.auth else ""
        return config.receive.user
    if isinstance(config, SmtpConfig):
        return config.auth.user if config.auth else ""
    return config.user if isinstance(config, ImapPopConfig) else ""


def with_tokens(
    config: JobConfig, grants: Mapping[str, Grant], tokens: Mapping[str, Secret]
) -> JobConfig:
    """The job's config (secrets opened) logging in with each grant's access token instead of
    a password: `mechanism` and `accessToken` set, the password left out."""
    replace = msgspec.structs.replace

    def smtp(cfg: SmtpConfig, path: str) -> SmtpConfig:
        if path not in grants or cfg.auth is None:
            return cfg
        auth = replace(
            cfg.auth,
            password=NO_SECRET,
            mechanism=grants[path].mechanism,
            access_token=tokens[path],
        )
        return replace(cfg, auth=auth)

    def mailbox(cfg: ImapPopConfig, path: str) -> ImapPopConfig:
        if path not in grants:
            return cfg
        return replace(
            cfg, password=NO_SECRET, mechanism=grants[path].mechanism, access_token=tokens[path]
        )

    if isinstance(config, RoundTripConfig):
        return replace(
            config,
            send=smtp(config.send, "send.auth.oauth2"),
            receive=mailbox(config.receive, "receive.oauth2"),
        )
    if isinstance(config, SmtpConfig):
        return smtp(config, "auth.oauth2")
    return mailbox(config, "oauth2") if isinstance(config, ImapPopConfig) else config


@dataclass(frozen=True)
class TokenFailure:
    """No token for a login of the monitor: the endpoint's OAuth2 error (`invalid_grant`) or
    ours (`unreachable`, `budget`, ...), and what it said."""

    path: str
    error: str
    message: str

    @property
    def why(self) -> str:
        said = f"{self.error}: {self.message}" if self.message else self.error
        return f"no OAuth2 access token ({said}): not sent"
