"""Agents that predate `sideChecks` (no `FEATURE_SIDE_CHECKS` in their heartbeat): a job asks
them by fields of its own (`mailDomain`, `blocklists`, `reverseDns`), set by `for_countries`
only on jobs to a country with such an agent live; their results send each side check's facts
in a field of its own (`mailDns`, `reputation`, `reverseDns`, `relay`), which `LegacyResult`
folds under the side check's name, so everything after the ingester's decoding reads
`sideChecks` alone. Only from such an agent: one that echoes its job's sealed asks (`asksSeal`)
announced `sideChecks`, and its legacy fields are not folded but `refused` (the ingester drops
them with a log line, counted as `legacy_fields`). Only the side checks older than the frame
have such fields; this module goes by `LEGACY_FIELDS_END`."""

from collections.abc import Sequence
from typing import Final, Protocol

import msgspec

from shared.messages import CheckJob, CheckResult

# The job's fields that ask an older agent what `sideChecks` asks a newer one, as a job without
# them has them.
JOB_FIELDS: Final = {"mail_domain": None, "blocklists": None, "reverse_dns": False}

# The result's attribute an older agent fills → the side check its facts are.
FIELDS: Final = {
    "mail_dns": "mail_dns",
    "reputation": "blocklists",
    "reverse_dns": "reverse_dns",
    "relay": "relay",
}


class _Folding(Protocol):
    side_checks: dict[str, object]
    asks_seal: str


def fold(result: _Folding) -> None:
    """Move `result`'s legacy side fields into its `side_checks` (a name already there wins),
    unless it comes from an agent that echoes sealed asks (`refused`)."""
    if result.asks_seal:
        return
    for attr, name in FIELDS.items():
        value = getattr(result, attr, None)
        if value is not None:
            result.side_checks.setdefault(name, value)
            setattr(result, attr, None)


def refused(result: _Folding) -> list[str]:
    """The side checks whose legacy fields `result` still carries (not folded: an agent that
    knows `sideChecks` sent them), each field cleared."""
    names = []
    for attr, name in FIELDS.items():
        if getattr(result, attr, None) is not None:
            setattr(result, attr, None)
            names.append(name)
    return names


class LegacyResult(CheckResult, kw_only=True):
    """A result with the fields an agent that predates `sideChecks` sends instead, folded into
    `side_checks` as it is decoded."""

    mail_dns: object = None
    reputation: object = None
    reverse_dns: object = None
    relay: object = None

    def __post_init__(self) -> None:
        fold(self)


def for_countries(jobs: Sequence[CheckJob], older: frozenset[str]) -> list[CheckJob]:
    """`jobs` as they go out: a job keeps its legacy fields only where its country is in `older`
    (those with a live agent that predates `sideChecks`)."""
    return [
        job if job.country in older or not _has_legacy(job) else _without_legacy(job)
        for job in jobs
    ]


def _has_legacy(job: CheckJob) -> bool:
    return any(getattr(job, f) != empty for f, empty in JOB_FIELDS.items())


def _without_legacy(job: CheckJob) -> CheckJob:
    return msgspec.structs.replace(job, **JOB_FIELDS)
