"""A round trip's legs over the Gmail API: `messages.send` with the raw RFC 822 message for the
send leg; for the mailbox leg a look (`messages.list` with `q` on the probe's token, every
`nextPageToken` followed, spam included), `messages.get` of the candidates only (their
headers and labels), and `messages.trash` (or `messages.delete`) of the round's message.

Gmail's answers are strangers' input, bounded as Graph's are (agent/probers/graph.py: each
answer ANSWER_MAX bytes, a look LOOK_BYTES_MAX bytes, decoded off the event loop into typed
structs), and a look up to PAGES_MAX pages, MESSAGES_MAX listed and CANDIDATES_MAX fetched.
The connection, the token's reach and the 4 calls at once per mailbox are Graph's session's.

What Gmail's status codes mean for the check:

- 429 (`rateLimitExceeded`, `userRateLimitExceeded`), a 403 with either reason, or 503:
  `inconclusive` (throttled), no further call, no verdict;
- 401 (an expired or revoked token): `auth`; any other 403 (the grant's scope): `auth`;
- any other 5xx: `temporary`; any other 4xx, or a body not of Gmail's shape: `protocol`.

A message is spam when it carries the label SPAM, and then its folder is `SPAM`, else `INBOX`.
"""

import asyncio
import base64
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from email.message import Message
from typing import Annotated, Final
from urllib.parse import quote, urlencode

import httpx
import msgspec

from agent.probers.base import ProbeFailure, Recorder, Target
from agent.probers.delivery import PROBE_HEADER, Probe, parse_probe
from agent.probers.graph import LOOK_BYTES_MAX, Session, session
from shared.gmail_units import UNITS
from shared.messages import ErrorKind, RoundTripReceive

API_GMAIL: Final = "gmail"
GMAIL_PORT: Final = 443
LABEL: Final = "Gmail"
PAGE_SIZE: Final = 100  # maxResults: Gmail's default page
PAGES_MAX: Final = 20
MESSAGES_MAX: Final = 1000  # listed in one look
CANDIDATES_MAX: Final = 20  # fetched in one look: a token is the round's, so few match it
HEADERS_MAX: Final = 500
SPAM: Final = "SPAM"
INBOX: Final = "INBOX"
THROTTLED: Final = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
# The headers a candidate is fetched with (`format=metadata`): the probe's and what results read.
_HEADERS: Final = (PROBE_HEADER, "To", "From", "Subject", "Received", "Authentication-Results")


class _Ref(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _List(msgspec.Struct, rename="camel"):
    messages: Annotated[list[_Ref], msgspec.Meta(max_length=500)] = msgspec.field(
        default_factory=list
    )
    next_page_token: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class _Header(msgspec.Struct):
    name: str
    value: str


class _Payload(msgspec.Struct):
    headers: Annotated[list[_Header], msgspec.Meta(max_length=HEADERS_MAX)] = msgspec.field(
        default_factory=list
    )


class _Message(msgspec.Struct, rename="camel"):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    label_ids: Annotated[list[str], msgspec.Meta(max_length=200)] = msgspec.field(
        default_factory=list
    )
    payload: _Payload = msgspec.field(default_factory=_Payload)


class _Reason(msgspec.Struct):
    reason: str = ""


class _Error(msgspec.Struct):
    code: int = 0
    message: str = ""
    status: str = ""
    errors: Annotated[list[_Reason], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )


class _ErrorBody(msgspec.Struct):
    error: _Error = msgspec.field(default_factory=_Error)


_list_decoder = msgspec.json.Decoder(_List)
_message_decoder = msgspec.json.Decoder(_Message)
_error_decoder = msgspec.json.Decoder(_ErrorBody)


async def _failure(answer: httpx.Response, data: bytes, what: str, user: str) -> ProbeFailure:
    status = answer.status_code
    try:
        said = (await asyncio.to_thread(_error_decoder.decode, data)).error
        reasons = [r.reason[:40] for r in said.errors if r.reason]
        message = said.message[:300]
    except msgspec.DecodeError:
        reasons, message = [], ""
    words = f"{status} {', '.join(reasons)}: {message}".strip().rstrip(":")
    if status in (429, 503) or (status == 403 and THROTTLED & set(reasons)):
        wait = answer.headers.get("retry-after", "")[:20] or "not said"
        return ProbeFailure(
            "inconclusive",
            f"throttled: Gmail answered {what} with {words} (Retry-After {wait}); no more calls "
            "before then, and no verdict on the mailbox",
        )
    kind: ErrorKind
    if status == 401:
        kind, words = "auth", f"the access token was refused ({words})"
    elif status == 403:
        kind = "auth"
        words = f"access to {user} denied ({words}): the grant's scope must include it"
    elif status >= 500:
        kind = "temporary"
    else:
        kind = "protocol"
    return ProbeFailure(kind, f"Gmail answered {what} with {words}")


def gmail_session(
    target: Target, user: str, token: str, rec: Recorder
) -> AbstractAsyncContextManager[Session]:
    """A Gmail API session to `target` as mailbox `user` (graph.session's, Gmail's errors)."""
    return session(target, user, token, rec, label=LABEL, failure=_failure, units=True)


def _user_path(user: str) -> str:
    return f"/gmail/v1/users/{quote(user, safe='@')}"


async def send_raw(target: Target, user: str, token: str, raw: bytes, rec: Recorder) -> float:
    """`messages.send` of the RFC 822 message as mailbox `user`; the perf_counter time Gmail
    took it (200)."""
    body = {"raw": base64.urlsafe_b64encode(raw).decode("ascii")}
    async with gmail_session(target, user, token, rec) as api:
        start = time.perf_counter()
        url = f"{api.base}{_user_path(user)}/messages/send"
        await api.call("POST", url, "messages.send", body, cost=UNITS["messages.send"])
        accepted = time.perf_counter()
    rec.record("submit", accepted - start)
    return accepted


@dataclass(slots=True)
class Seen:
    folder: str
    headers: Message
    probe: Probe


async def look(api: Session, receive: RoundTripReceive, probe: Probe) -> list[Seen]:
    """One look: the messages carrying the round's token (inbox and spam, not the trash),
    each fetched for its headers and labels, the round's own removed as the monitor says."""
    api.read = 0
    found: list[Seen] = []
    candidates = await _listing(api, probe.token)
    if len(candidates) > CANDIDATES_MAX:
        raise ProbeFailure(
            "protocol",
            f"Gmail lists {len(candidates)} messages for this round's token: over the"
            f" {CANDIDATES_MAX} a look fetches",
        )
    for ref in candidates:
        message = await _get(api, ref.id)
        headers = _headers(message)
        other = parse_probe(headers.get(PROBE_HEADER))
        if other is None or other.token != probe.token:
            continue
        await _remove(api, message.id, receive.cleanup)
        found.append(Seen(SPAM if SPAM in message.label_ids else INBOX, headers, other))
    return found


async def _listing(api: Session, token: str) -> list[_Ref]:
    """Every message `q` finds for the token, page after page, within the look's bounds."""
    base = f"{api.base}{_user_path(api.user)}/messages"
    query = {"q": f"{token} -in:trash", "includeSpamTrash": "true", "maxResults": str(PAGE_SIZE)}
    refs: list[_Ref] = []
    page_token: str | None = None
    pages = 0
    while True:
        pages += 1
        if pages > PAGES_MAX:
            raise ProbeFailure(
                "protocol",
                f"Gmail's listing goes on past {PAGES_MAX} pages: more than a look reads",
            )
        params = query if page_token is None else {**query, "pageToken": page_token}
        data = await api.call(
            "GET",
            f"{base}?{urlencode(params)}",
            f"messages.list (page {pages})",
            cost=UNITS["messages.list"],
        )
        if api.read > LOOK_BYTES_MAX:
            raise ProbeFailure(
                "protocol", f"Gmail's answers of one look are over {LOOK_BYTES_MAX} bytes"
            )
        try:
            page = await asyncio.to_thread(_list_decoder.decode, data)
        except msgspec.DecodeError as exc:
            raise ProbeFailure(
                "protocol", f"Gmail's listing is not a message list: {str(exc)[:200]}"
            ) from None
        refs += page.messages
        if len(refs) > MESSAGES_MAX:
            raise ProbeFailure("protocol", f"Gmail's listing holds over {MESSAGES_MAX} messages")
        if not page.next_page_token:
            return refs
        page_token = page.next_page_token


async def _get(api: Session, message_id: str) -> _Message:
    params = [("format", "metadata"), *(("metadataHeaders", h) for h in _HEADERS)]
    url = f"{api.base}{_user_path(api.user)}/messages/{quote(message_id, safe='')}"
    data = await api.call(
        "GET", f"{url}?{urlencode(params)}", "messages.get", cost=UNITS["messages.get"]
    )
    try:
        return await asyncio.to_thread(_message_decoder.decode, data)
    except msgspec.DecodeError as exc:
        raise ProbeFailure(
            "protocol", f"Gmail's message is not of its shape: {str(exc)[:200]}"
        ) from None


def _headers(message: _Message) -> Message:
    headers = Message()
    for header in message.payload.headers:
        headers[header.name[:100]] = header.value[:8192]
    return headers


async def _remove(api: Session, message_id: str, cleanup: str) -> None:
    url = f"{api.base}{_user_path(api.user)}/messages/{quote(message_id, safe='')}"
    if cleanup == "delete":
        await api.call("DELETE", url, "messages.delete", cost=UNITS["messages.delete"])
        return
    await api.call("POST", f"{url}/trash", "messages.trash", cost=UNITS["messages.trash"])
