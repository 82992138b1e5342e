"""An IMAP/POP3 monitor's mailbox check over a mailbox API (its config's `api`), for a mailbox
whose IMAP and POP3 are off: log in with the job's access token and read the inbox, as the IMAP
check logs in and selects nothing more.

- Microsoft Graph: `GET /v1.0/users/{id}/mailFolders/inbox` (timed as `auth`: the token and the
  app's reach to the mailbox are checked there), then one page of at most LIST_TOP messages'
  ids (`GET …/mailFolders/inbox/messages`, timed as `fetch`);
- Gmail API: `users.getProfile` (`auth`), then `users.labels.get` of INBOX (`fetch`).

Each answer is bounded and decoded off the event loop into a typed struct; the status codes
mean what they mean for a round trip's leg (agent/probers/graph.py, gmail.py): throttled
`inconclusive`, an expired or revoked token `auth`. Nothing in the mailbox is changed.
"""

import asyncio
import time
from functools import partial
from typing import Annotated, Final, TypeVar
from urllib.parse import quote

import msgspec

from agent.probers import gmail, graph
from agent.probers.base import ProbeFailure, Recorder, Target
from shared.gmail_units import UNITS
from shared.messages import CheckJob, ImapCheckJob

APIS: Final = (graph.API_GRAPH, gmail.API_GMAIL)
LIST_TOP: Final = 10  # messages listed by the Graph check: it reads the inbox, no more
T = TypeVar("T")


class _GraphFolder(msgspec.Struct, rename="camel"):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    total_item_count: int | None = None


class _GraphId(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class _GraphIds(msgspec.Struct):
    value: Annotated[list[_GraphId], msgspec.Meta(max_length=LIST_TOP)]


class _GmailProfile(msgspec.Struct, rename="camel"):
    email_address: Annotated[str, msgspec.Meta(min_length=1, max_length=320)]


class _GmailLabel(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


async def probe_mailbox_api(target: Target, job: CheckJob, rec: Recorder) -> None:
    """The check over the job's `api`; a ProbeFailure says what went wrong."""
    if not isinstance(job, ImapCheckJob):
        raise ProbeFailure("protocol", f"a mailbox API reads a mailbox, not a {job.monitor_type}")
    config = job.config
    token = config.access_token.reveal()
    if config.api == graph.API_GRAPH:
        async with graph.session(target, config.user, token, rec) as api:
            await _graph(api)
    elif config.api == gmail.API_GMAIL:
        async with gmail.gmail_session(target, config.user, token, rec) as api:
            await _gmail(api)
    else:
        raise ProbeFailure("protocol", f"api {config.api[:20]!r} is not one this agent knows")


async def _graph(api: graph.Session) -> None:
    user = f"/v1.0/users/{quote(api.user, safe='@')}"
    with api.rec.phase("auth"):
        data = await api.call("GET", f"{api.base}{user}/mailFolders/inbox", "mailFolders/inbox")
        await _decode(data, _GraphFolder, "Graph's inbox")
    start = time.perf_counter()
    query = f"$top={LIST_TOP}&$select=id"
    url = f"{api.base}{user}/mailFolders/inbox/messages?{query}"
    await _decode(await api.call("GET", url, "list inbox"), _GraphIds, "Graph's listing")
    api.rec.record("fetch", time.perf_counter() - start)


async def _gmail(api: graph.Session) -> None:
    user = f"/gmail/v1/users/{quote(api.user, safe='@')}"
    with api.rec.phase("auth"):
        data = await api.call(
            "GET", f"{api.base}{user}/profile", "users.getProfile", cost=UNITS["users.getProfile"]
        )
        await _decode(data, _GmailProfile, "Gmail's profile")
    start = time.perf_counter()
    data = await api.call(
        "GET", f"{api.base}{user}/labels/INBOX", "labels.get INBOX", cost=UNITS["labels.get"]
    )
    await _decode(data, _GmailLabel, "Gmail's INBOX label")
    api.rec.record("fetch", time.perf_counter() - start)


async def _decode(data: bytes, into: type[T], what: str) -> T:
    try:
        return await asyncio.to_thread(partial(msgspec.json.decode, data, type=into))
    except msgspec.DecodeError as exc:
        raise ProbeFailure("protocol", f"{what} is not of its shape: {str(exc)[:200]}") from None
