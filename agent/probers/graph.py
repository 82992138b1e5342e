"""A round trip's legs over Microsoft Graph: `sendMail` for the send leg, and for the mailbox
leg a look in each folder (`GET /v1.0/users/{id}/mailFolders/{folder}/messages`, filtered to
the probe messages by subject, every `@odata.nextLink` followed) that moves what it found to
Deleted Items (or deletes it).

Graph's answers are strangers' input: each answer is read up to ANSWER_MAX bytes, a look up to
PAGES_MAX pages, MESSAGES_MAX messages and LOOK_BYTES_MAX bytes, and decoded off the event loop
into typed structs; an answer of another shape is a `protocol` error with its reason. A
`nextLink` is followed only to the server and path it came from: the token goes nowhere else.

What Graph's status codes mean for the check:

- 429 or 503 (throttled, with `Retry-After`): `inconclusive`, no further call, no verdict;
- 401 (`InvalidAuthenticationToken`: expired, revoked): `auth`, as a refused IMAP login;
- 403 (`ErrorAccessDenied`: the app's scope leaves the mailbox out): `auth`;
- any other 5xx: `temporary`; any other 4xx, or a body not of Graph's shape: `protocol`.

The connection goes to the address the agent resolved and checked (`Target.addresses`), with
the Target's TLS context; no proxies from the environment, no redirects.
"""

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import Message
from typing import Annotated, Final
from urllib.parse import quote, urlsplit

import httpcore
import httpx
import msgspec

from agent.probers.base import ProbeFailure, Recorder, Target
from agent.probers.delivery import PROBE_HEADER, SUBJECT_PREFIX, Probe, is_leftover, parse_probe
from shared.http_backend import FlowBackend
from shared.messages import ErrorKind, RoundTripConfig, RoundTripReceive

API_GRAPH: Final = "graph"
GRAPH_PORT: Final = 443
ANSWER_MAX: Final = 1024 * 1024  # bytes of one answer
PAGES_MAX: Final = 20  # pages of one folder's listing in one look
PAGE_SIZE: Final = 50  # $top: Graph's default page is 10
MESSAGES_MAX: Final = PAGES_MAX * PAGE_SIZE
LOOK_BYTES_MAX: Final = 8 * 1024 * 1024  # bytes of one look's answers, every folder
HEADERS_MAX: Final = 500  # internetMessageHeaders of one message
CONNECT_S: Final = 5.0
CALL_S: Final = 10.0  # each call; the check's own deadline bounds the leg
JUNK: Final = "junkemail"
# Graph's well-known folder names for the IMAP-style names a monitor may have kept.
_WELL_KNOWN: Final = {"inbox": "inbox", "junk": JUNK, "junk email": JUNK, "spam": JUNK}
_SELECT: Final = "id,subject,internetMessageId,internetMessageHeaders"
CLEANUPS: Final = frozenset({"", "move", "delete"})
# Graph serves at most 4 concurrent requests per app and mailbox (Outlook's limit); the agent's
# checks share that many calls per server and mailbox, and wait for a free one.
MAILBOX_CALLS: Final = 4
# Graph serves at most 10,000 requests per 10 minutes per app and mailbox. This agent counts its
# own calls to each server's mailbox by minute over the last BUDGET_WINDOW_S; a call that would
# pass MAILBOX_BUDGET ends its check `inconclusive` unsent (`calls_left`). This bounds one agent
# only; the controller's login cap bounds the checks of every agent and country.
MAILBOX_BUDGET: Final = 10_000
BUDGET_WINDOW_S: Final = 600
_PRUNE_AT: Final = 1024  # mailboxes counted before the idle ones are dropped


class _Header(msgspec.Struct):
    name: str
    value: str


class _Message(msgspec.Struct, rename="camel"):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    subject: str | None = None
    internet_message_headers: Annotated[list[_Header], msgspec.Meta(max_length=HEADERS_MAX)] = (
        msgspec.field(default_factory=list)
    )


class _Page(msgspec.Struct):
    value: Annotated[list[_Message], msgspec.Meta(max_length=1000)]
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


class _ErrorInfo(msgspec.Struct):
    code: str = ""
    message: str = ""


class _ErrorBody(msgspec.Struct):
    error: _ErrorInfo = msgspec.field(default_factory=_ErrorInfo)


_page_decoder = msgspec.json.Decoder(_Page)
_error_decoder = msgspec.json.Decoder(_ErrorBody)


def folders(receive: RoundTripReceive) -> tuple[list[str], set[str]]:
    """The folders a Graph look reads, as well-known names or ids, and which are spam folders:
    the monitor's (INBOX as `inbox`), with `junkemail` always read as a spam folder."""
    named = [_WELL_KNOWN.get(f.lower(), f) for f in receive.folders] or ["inbox"]
    spam = {_WELL_KNOWN.get(f.lower(), f) for f in receive.spam_folders} | {JUNK}
    return list(dict.fromkeys([*named, JUNK])), spam


class _PinnedBackend(FlowBackend):
    """Connects to the Target's checked addresses, whatever the URL's host resolves to now."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self._addresses = addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self._addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        return await self.connect_any(self._addresses, port, timeout, local_address, socket_options)


@dataclass(slots=True)
class _Slots:
    calls: asyncio.Semaphore
    holders: int = 0  # calls waiting or running: the entry goes when none is left


_mailboxes: dict[tuple[str, str], _Slots] = {}


@asynccontextmanager
async def _mailbox_call(base: str, user: str) -> AsyncIterator[None]:
    """One of the MAILBOX_CALLS calls of this agent to a server's mailbox. The table holds only
    mailboxes with calls waiting or running, so it is bounded by the checks running."""
    key = (base, user.lower())
    slots = _mailboxes.get(key) or _mailboxes.setdefault(
        key, _Slots(asyncio.Semaphore(MAILBOX_CALLS))
    )
    slots.holders += 1
    try:
        async with slots.calls:
            yield
    finally:
        slots.holders -= 1
        if slots.holders == 0:
            del _mailboxes[key]


_spent: dict[tuple[str, str], dict[int, int]] = {}  # (server, mailbox) → calls by minute


def calls_left(key: tuple[str, str], now_s: float, budget: int) -> bool:
    """Take one call of `key`'s budget at monotonic `now_s`; False (nothing taken) when its
    last BUDGET_WINDOW_S hold `budget` calls already. Memory: at most a window of minutes per
    mailbox, and only mailboxes called within the window once past _PRUNE_AT of them."""
    minute = int(now_s // 60)
    oldest = minute - BUDGET_WINDOW_S // 60 + 1
    if len(_spent) > _PRUNE_AT:
        for idle in [k for k, by in _spent.items() if max(by, default=oldest - 1) < oldest]:
            del _spent[idle]
    by_minute = _spent.setdefault(key, {})
    for gone in [m for m in by_minute if m < oldest]:
        del by_minute[gone]
    if sum(by_minute.values()) >= budget:
        return False
    by_minute[minute] = by_minute.get(minute, 0) + 1
    return True


# What an API's error answer means for the check: (answer, its bytes, the call, the mailbox).
Failure = Callable[[httpx.Response, bytes, str, str], Awaitable[ProbeFailure]]


@dataclass(slots=True)
class Session:
    """Calls to one mailbox API server as one mailbox, with one token: Graph's, or another
    API's (`label` names it in messages, `failure` reads its error answers)."""

    client: httpx.AsyncClient
    base: str  # https://host:port
    user: str
    rec: Recorder
    read: int = 0  # answer bytes this look
    label: str = "Graph"
    failure: Failure | None = None  # None: Graph's
    units: bool = False  # calls cost quota units (Gmail's), from the job's `apiUnits`

    async def call(
        self, method: str, url: str, what: str, body: object = None, *, cost: int = 1
    ) -> bytes:
        """One call costing `cost` of the job's allowance (a call, or the method's quota
        units); its answer's bytes (at most ANSWER_MAX), or the failure its status says."""
        self.rec.current = what
        given = self.rec.api_units if self.units else self.rec.api_calls
        if given.left is not None:
            if given.left < cost:
                spent = "quota units" if self.units else "calls"
                raise ProbeFailure(
                    "inconclusive",
                    f"throttled, not sent: this check spent the {spent} for {self.user} at "
                    f"{self.label} the controller gave it (its share of the mailbox's "
                    f"{spent} across agents and countries); no verdict on the mailbox",
                )
            given.left -= cost
        key, now_s = (self.base, self.user.lower()), self.rec.clock.monotonic()
        if self.failure is None and not calls_left(key, now_s, MAILBOX_BUDGET):
            raise ProbeFailure(
                "inconclusive",
                f"throttled, not sent: this agent made {MAILBOX_BUDGET} calls to {self.user} at "
                f"Graph in {BUDGET_WINDOW_S // 60} minutes, Graph's limit per app and mailbox; "
                "no verdict on the mailbox",
            )
        content = None if body is None else msgspec.json.encode(body)
        headers = {"content-type": "application/json"} if content is not None else {}
        try:
            async with (
                _mailbox_call(self.base, self.user),
                self.client.stream(method, url, content=content, headers=headers) as answer,
            ):
                data = await _capped(answer, what, self.label)
        except httpx.TimeoutException as exc:
            raise ProbeFailure("timeout", f"{self.label} gave no answer to {what} in time") from exc
        except httpx.ConnectError as exc:
            if (refused := _tls_failure(exc)) is not None:
                raise ProbeFailure(
                    "tls", f"TLS with {self.label} failed for {what}: {refused}"
                ) from exc
            raise ProbeFailure(
                "refused", f"cannot connect to {self.label} for {what}: {exc}"
            ) from exc
        except httpx.HTTPError as exc:
            raise ProbeFailure(
                "protocol", f"{self.label}'s answer to {what} broke off: {exc}"
            ) from exc
        self.read += len(data)
        if answer.status_code >= 300:
            raise await (self.failure or _failure)(answer, data, what, self.user)
        return data


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failed connection (a refused certificate, no common version),
    None when it failed otherwise: the token was not sent either way."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


async def _capped(answer: httpx.Response, what: str, label: str) -> bytes:
    too_long = f"{label}'s answer to {what} is over {ANSWER_MAX} bytes"
    length = answer.headers.get("content-length", "")
    if length.isdigit() and int(length) > ANSWER_MAX:
        raise ProbeFailure("protocol", too_long)
    data = bytearray()
    async for chunk in answer.aiter_raw():
        data += chunk
        if len(data) > ANSWER_MAX:
            raise ProbeFailure("protocol", too_long)
    return bytes(data)


async def _failure(answer: httpx.Response, data: bytes, what: str, user: str) -> ProbeFailure:
    status = answer.status_code
    try:
        said = (await asyncio.to_thread(_error_decoder.decode, data)).error
        code, message = said.code[:80], said.message[:300]
    except msgspec.DecodeError:
        code, message = "", ""
    words = f"{status} {code}: {message}".strip().rstrip(":")
    if status in (429, 503):
        wait = answer.headers.get("retry-after", "")[:20] or "not said"
        return ProbeFailure(
            "inconclusive",
            f"throttled: Graph answered {what} with {words} (Retry-After {wait}); no more calls "
            "before then, and no verdict on the mailbox",
        )
    kind: ErrorKind
    if status == 401:
        kind, words = "auth", f"the access token was refused ({words})"
    elif status == 403:
        kind = "auth"
        words = f"access to {user} denied ({words}): the app's scope must include this mailbox"
    elif status >= 500:
        kind = "temporary"
    else:
        kind = "protocol"
    return ProbeFailure(kind, f"Graph answered {what} with {words}")


@asynccontextmanager
async def session(
    target: Target,
    user: str,
    token: str,
    rec: Recorder,
    *,
    label: str = "Graph",
    failure: Failure | None = None,
    units: bool = False,
) -> AsyncIterator[Session]:
    """A Graph session (or `label`'s) to `target` as mailbox `user`; the token only over TLS,
    only to it."""
    if not user or not token:
        missing = "a mailbox (user)" if not user else "an access token"
        raise ProbeFailure("auth", f"a {label} leg needs {missing}; nothing was sent")
    transport = httpx.AsyncHTTPTransport(verify=target.ssl_context, trust_env=False, retries=0)
    # httpx takes no network backend of its own: its pool is replaced by one on the pinned
    # backend, with the same TLS context.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=target.ssl_context,
        max_connections=1,
        network_backend=_PinnedBackend(target.addresses),
    )
    host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    base = f"https://{host}:{target.port}"
    client = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(CALL_S, connect=CONNECT_S),
        follow_redirects=False,
        trust_env=False,
        headers={"authorization": f"Bearer {token}", "accept": "application/json"},
    )
    try:
        yield Session(client, base, user, rec, label=label, failure=failure, units=units)
    finally:
        await client.aclose()


def _user_path(user: str) -> str:
    return f"/v1.0/users/{quote(user, safe='@')}"


async def send_mail(
    target: Target, config: RoundTripConfig, probe: Probe, subject: str, rec: Recorder
) -> float:
    """`sendMail` as the sending mailbox; the perf_counter time Graph accepted it (202)."""
    send = config.send
    auth = send.auth
    user = (auth.user if auth is not None else "") or send.sender
    token = auth.access_token.reveal() if auth is not None else ""
    message = {
        "message": {
            "subject": subject,
            "body": {
                "contentType": "Text",
                "content": "A mailprobe round-trip check: it deletes this message once it has "
                f"found it.\ntoken: {probe.token}\n",
            },
            "toRecipients": [{"emailAddress": {"address": config.to}}],
            "internetMessageHeaders": [{"name": PROBE_HEADER, "value": probe.header()}],
        },
        "saveToSentItems": False,
    }
    async with session(target, user, token, rec) as graph:
        start = time.perf_counter()
        await graph.call("POST", f"{graph.base}{_user_path(user)}/sendMail", "sendMail", message)
        accepted = time.perf_counter()
    rec.record("submit", accepted - start)
    return accepted


@dataclass(slots=True)
class Seen:
    folder: str
    headers: Message
    probe: Probe


async def look(
    graph: Session, receive: RoundTripReceive, probe: Probe, timeout_ms: int
) -> list[Seen]:
    """One look in every folder: this monitor's and country's probes (the round's own and
    leftovers of earlier rounds), removed as the monitor says."""
    graph.read = 0
    found: list[Seen] = []
    for folder in folders(receive)[0]:
        for message in await _listing(graph, folder):
            headers = _headers(message)
            other = parse_probe(headers.get(PROBE_HEADER))
            if other is None or not (
                other.token == probe.token or is_leftover(other, probe, timeout_ms)
            ):
                continue
            await _remove(graph, message.id, receive.cleanup)
            found.append(Seen(folder, headers, other))
    return found


async def _listing(graph: Session, folder: str) -> list[_Message]:
    """Every probe message of `folder`, page after page, within the look's bounds."""
    literal = SUBJECT_PREFIX.replace("'", "''")
    path = f"{_user_path(graph.user)}/mailFolders/{quote(folder, safe='')}/messages"
    params = {"$filter": f"startswith(subject,'{literal}')", "$select": _SELECT}
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    url: str | None = f"{graph.base}{path}?{query}&$top={PAGE_SIZE}"
    messages: list[_Message] = []
    pages = 0
    while url is not None:
        pages += 1
        if pages > PAGES_MAX:
            raise ProbeFailure(
                "protocol",
                f"the listing of {folder} goes on past {PAGES_MAX} pages ({len(messages)} "
                "probe messages): more than a look reads",
            )
        data = await graph.call("GET", url, f"list {folder} (page {pages})")
        if graph.read > LOOK_BYTES_MAX:
            raise ProbeFailure(
                "protocol", f"Graph's answers of one look are over {LOOK_BYTES_MAX} bytes"
            )
        try:
            page = await asyncio.to_thread(_page_decoder.decode, data)
        except msgspec.DecodeError as exc:
            raise ProbeFailure(
                "protocol", f"Graph's listing of {folder} is not a message list: {str(exc)[:200]}"
            ) from None
        messages += page.value
        if len(messages) > MESSAGES_MAX:
            raise ProbeFailure(
                "protocol", f"the listing of {folder} holds over {MESSAGES_MAX} probe messages"
            )
        url = page.next_link
        if url is not None and not _same_place(url, graph.base, path):
            raise ProbeFailure(
                "protocol",
                f"Graph's nextLink for {folder} points elsewhere ({url[:120]}); not followed",
            )
    return messages


def _same_place(url: str, base: str, path: str) -> bool:
    """A nextLink to the same scheme, host, port and listing."""
    link, own = urlsplit(url), urlsplit(base)
    try:
        port = link.port or GRAPH_PORT
    except ValueError:
        return False
    return (
        link.scheme == "https"
        and link.hostname == own.hostname
        and port == (own.port or GRAPH_PORT)
        and link.path.lower() == path.lower()
    )


def _headers(message: _Message) -> Message:
    headers = Message()
    for header in message.internet_message_headers:
        headers[header.name[:100]] = header.value[:8192]
    return headers


async def _remove(graph: Session, message_id: str, cleanup: str) -> None:
    url = f"{graph.base}{_user_path(graph.user)}/messages/{quote(message_id, safe='')}"
    if cleanup == "delete":
        await graph.call("DELETE", url, "delete")
        return
    await graph.call(
        "POST", f"{url}/move", "move to Deleted Items", {"destinationId": "deleteditems"}
    )
