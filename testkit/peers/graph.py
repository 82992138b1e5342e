"""A loopback Microsoft Graph mail peer (HTTPS, state in memory) that answers as Microsoft
documents it, for the Graph legs of a round trip (agent/probers/graph.py):

- `POST /{tenant}/oauth2/v2.0/token`: the client credentials grant, scope
  `https://graph.microsoft.com/.default`; 200 with `access_token` and `expires_in`;
- `POST /v1.0/users/{id}/sendMail`: 202, delivered to the recipient's mailbox here;
- `GET /v1.0/users/{id}/mailFolders/{folder}/messages`: `value` and `@odata.nextLink`
  (`$skip`); 10 a page unless `$top` (at most 1000), newest first;
- `POST /v1.0/users/{id}/messages/{mid}/move` `{"destinationId": "deleteditems"}`: 201 with
  the moved message (a new id);
- `DELETE /v1.0/users/{id}/messages/{mid}`: 204.

`$filter` takes what the prober sends: `startswith(subject,'…')`, `subject eq '…'`,
`internetMessageId eq '…'`, `receivedDateTime gt 2026-01-01T00:00:00Z`. `$select` picks the
fields (`id` always). Folders are the well-known names `inbox`, `junkemail`, `deleteditems`.
A token it did not issue, or any token once `expired` is set, is 401
`InvalidAuthenticationToken`; a mailbox the token may not touch (`scoped`) is 403
`ErrorAccessDenied`, as Exchange RBAC for Applications answers.

Faults, switchable per test: `throttle` (429 with `Retry-After`, `TooManyRequests`),
`unavailable` (503 with `Retry-After`), `expired`, `slow_s` (each answer waits), `oversized`
(a list answer padded past any sane size), `odd` (a list answer that is not Graph's shape).
"""

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import trustme
import uvicorn

from shared import embedded

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
FOLDERS = ("inbox", "junkemail", "deleteditems")
PAGE_DEFAULT = 10
TOP_MAX = 1000

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class GraphMessage:
    id: str
    subject: str
    internet_message_id: str
    headers: list[tuple[str, str]]
    received: float  # epoch seconds: the order of a listing (newest first)
    body: str = ""

    def resource(self, select: list[str] | None) -> dict[str, Any]:
        full: dict[str, Any] = {
            "id": self.id,
            "subject": self.subject,
            "internetMessageId": self.internet_message_id,
            "receivedDateTime": datetime.fromtimestamp(self.received, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "internetMessageHeaders": [{"name": n, "value": v} for n, v in self.headers],
            "body": {"contentType": "text", "content": self.body},
        }
        if select is None:
            return full
        return {k: v for k, v in full.items() if k == "id" or k in select}


@dataclass
class GraphPeer:
    """The tenant's mailboxes (`users`: address → folder → messages) and its app."""

    users: set[str]
    client_id: str = "app-client"
    client_secret: str = "app-secret"
    # Mailboxes the app may touch (RBAC for Applications); None: all of `users`.
    scoped: set[str] | None = None
    auth_results: str = "mx.contoso.test; spf=pass smtp.mailfrom=contoso.test; dkim=pass"
    arc: bool = True  # stamp an ARC set on each delivery
    junk: bool = False  # deliver into junkemail
    # Faults.
    throttle: bool = False
    unavailable: bool = False
    retry_after_s: int = 30
    expired: bool = False
    slow_s: float = 0.0
    oversized: bool = False
    odd: bool = False
    # What happened.
    tokens: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)  # "GET /v1.0/…" as received
    sent: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)  # requests being answered, by mailbox
    most_in_flight: dict[str, int] = field(default_factory=dict)  # the most at once, by mailbox
    url: str = ""  # https://127.0.0.1:port
    port: int = 0
    mail: dict[str, dict[str, list[GraphMessage]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for user in self.users:
            self.mail[user.lower()] = {f: [] for f in FOLDERS}

    def token(self) -> str:
        """An access token of the app, as the token endpoint would issue it."""
        token = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")
        self.tokens.add(token)
        return token

    def folder(self, user: str, folder: str) -> list[GraphMessage]:
        return self.mail[user.lower()][folder]

    def deliver(
        self, user: str, raw: bytes, *, folder: str | None = None, received: float | None = None
    ) -> GraphMessage:
        """File a message (its RFC 5322 bytes) as Exchange does, stamping Received,
        Authentication-Results and an ARC set on top."""
        parsed = BytesHeaderParser().parsebytes(raw)
        stamp = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        top = [
            ("Received", f"from sender.test ([127.0.0.1]) by mx.contoso.test; {stamp}"),
            ("Authentication-Results", self.auth_results),
        ]
        if self.arc:
            top += [
                ("ARC-Seal", "i=1; a=rsa-sha256; s=arc; d=contoso.test; cv=none; b=AAAA"),
                ("ARC-Message-Signature", "i=1; a=rsa-sha256; d=contoso.test; s=arc; b=BBBB"),
                ("ARC-Authentication-Results", f"i=1; {self.auth_results}"),
            ]
        headers = top + [(k, str(v)) for k, v in parsed.items()]
        message = GraphMessage(
            id="AAMk" + secrets.token_urlsafe(16),
            subject=str(parsed.get("Subject", "")),
            internet_message_id=str(parsed.get("Message-ID", "")),
            headers=headers,
            received=time.time() if received is None else received,
        )
        where = folder or ("junkemail" if self.junk else "inbox")
        self.folder(user, where).append(message)
        return message

    # The ASGI app.

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode()
        self.calls.append(f"{method} {path}" + (f"?{query}" if query else ""))
        parts = path.split("/")
        mailbox = unquote(parts[3]).lower() if len(parts) > 3 and parts[2] == "users" else ""
        self.in_flight[mailbox] = self.in_flight.get(mailbox, 0) + 1
        self.most_in_flight[mailbox] = max(
            self.most_in_flight.get(mailbox, 0), self.in_flight[mailbox]
        )
        try:
            if self.slow_s:
                await asyncio.sleep(self.slow_s)
            status, headers, payload = self._answer(method, path, query, body, scope)
        finally:
            self.in_flight[mailbox] -= 1
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def _answer(
        self, method: str, path: str, query: str, body: bytes, scope: Scope
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if path.endswith("/oauth2/v2.0/token") and method == "POST":
            return self._token(body)
        if self.throttle or self.unavailable:
            status, code = (
                (429, "TooManyRequests") if self.throttle else (503, "ServiceNotAvailable")
            )
            return (
                status,
                [(b"retry-after", str(self.retry_after_s).encode())],
                _error(code, "Application is over its MailboxConcurrency limit."),
            )
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        token = auth.removeprefix("Bearer ")
        if self.expired or token not in self.tokens:
            return (
                401,
                [(b"www-authenticate", b'Bearer error="invalid_token"')],
                _error(
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                ),
            )
        parts = [unquote(p) for p in path.split("/") if p]
        if len(parts) < 3 or parts[:2] != ["v1.0", "users"]:
            return 400, [], _error("BadRequest", "Resource not found for the segment.")
        user = parts[2].lower()
        if user not in self.mail:
            return (
                404,
                [],
                _error("ErrorInvalidUser", f"The requested user '{parts[2]}' is invalid."),
            )
        if self.scoped is not None and user not in {u.lower() for u in self.scoped}:
            return (
                403,
                [],
                _error("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
            )
        rest = parts[3:]
        if method == "POST" and rest == ["sendMail"]:
            return self._send_mail(user, body)
        if method == "GET" and len(rest) == 2 and rest[0] == "mailFolders":
            return self._folder(user, rest[1].lower())
        if (
            method == "GET"
            and len(rest) == 3
            and rest[0] == "mailFolders"
            and rest[2] == "messages"
        ):
            return self._list(user, rest[1].lower(), parse_qs(query), path)
        if len(rest) >= 2 and rest[0] == "messages":
            found = self._find(user, rest[1])
            if found is None:
                return (
                    404,
                    [],
                    _error("ErrorItemNotFound", "The specified object was not found in the store."),
                )
            where, message = found
            if method == "DELETE" and len(rest) == 2:
                self.folder(user, where).remove(message)
                return 204, [], b""
            if method == "POST" and rest[2:] == ["move"]:
                target = str(json.loads(body or b"{}").get("destinationId", "")).lower()
                if target not in FOLDERS:
                    return 400, [], _error("ErrorInvalidIdMalformed", "Id is malformed.")
                self.folder(user, where).remove(message)
                moved = GraphMessage(
                    "AAMk" + secrets.token_urlsafe(16),
                    message.subject,
                    message.internet_message_id,
                    message.headers,
                    message.received,
                )
                self.folder(user, target).append(moved)
                return 201, [], json.dumps(moved.resource(None)).encode()
        return 405, [], _error("UnsupportedRequest", "Unsupported request.")

    def _token(self, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The Microsoft identity platform's client credentials grant."""
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, [], json.dumps({"error": "unsupported_grant_type"}).encode()
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, [], json.dumps({"error": "invalid_client"}).encode()
        if form.get("scope") != GRAPH_SCOPE:
            return 400, [], json.dumps({"error": "invalid_scope"}).encode()
        answer = {"token_type": "Bearer", "expires_in": 3599, "access_token": self.token()}
        return 200, [], json.dumps(answer).encode()

    def _send_mail(self, user: str, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            message = json.loads(body)["message"]
            to = [r["emailAddress"]["address"] for r in message["toRecipients"]]
        except (ValueError, KeyError, TypeError):
            return 400, [], _error("ErrorInvalidRecipients", "The message has no valid recipients.")
        lines = [
            f"From: {user}",
            f"To: {', '.join(to)}",
            f"Subject: {message.get('subject', '')}",
            f"Message-ID: <{secrets.token_hex(8)}@contoso.test>",
        ]
        for header in message.get("internetMessageHeaders") or []:
            name = str(header["name"])
            if not name.lower().startswith("x-"):  # Graph takes custom headers only
                return (
                    400,
                    [],
                    _error("InvalidInternetMessageHeader", f"{name} is not a custom header."),
                )
            lines.append(f"{name}: {header['value']}")
        raw = (
            "\r\n".join(lines) + "\r\n\r\n" + str(message.get("body", {}).get("content", ""))
        ).encode()
        self.sent += 1
        for address in to:
            if address.lower() in self.mail:
                self.deliver(address, raw)
        return 202, [], b""

    def _find(self, user: str, mid: str) -> tuple[str, GraphMessage] | None:
        for where, messages in self.mail[user].items():
            for message in messages:
                if message.id == mid:
                    return where, message
        return None

    def _folder(self, user: str, folder: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """A mail folder resource (`GET /users/{id}/mailFolders/{id}`)."""
        if folder not in FOLDERS:
            return 404, [], _error("ErrorInvalidIdMalformed", "Id is malformed.")
        if self.odd:
            return 200, [], b'{"displayName": 7}'
        resource = {
            "id": f"AQMk{folder}",
            "displayName": folder.capitalize(),
            "totalItemCount": len(self.folder(user, folder)),
        }
        return 200, [], json.dumps(resource).encode()

    def _list(
        self, user: str, folder: str, query: dict[str, list[str]], path: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if folder not in FOLDERS:
            return 404, [], _error("ErrorInvalidIdMalformed", "Id is malformed.")
        if self.odd:
            return 200, [], b'{"value": {"not": "a list"}}'
        keep = _filter(query.get("$filter", [""])[0])
        if keep is None:
            return (
                400,
                [],
                _error(
                    "ErrorInvalidUrlQueryFilter",
                    "The query filter contains one or more invalid nodes.",
                ),
            )
        select = query["$select"][0].split(",") if "$select" in query else None
        top = min(int(query.get("$top", [str(PAGE_DEFAULT)])[0]), TOP_MAX)
        skip = int(query.get("$skip", ["0"])[0])
        matching = sorted(
            (m for m in self.folder(user, folder) if keep(m)), key=lambda m: -m.received
        )
        page = matching[skip : skip + top]
        answer: dict[str, Any] = {
            "@odata.context": f"{self.url}/v1.0/$metadata#users('{user}')/messages",
            "value": [m.resource(select) for m in page],
        }
        if skip + top < len(matching):
            rest = {k: v[0] for k, v in query.items() if k not in ("$skip", "$top")}
            link = "&".join(f"{k}={quote(v, safe='')}" for k, v in rest.items())
            answer["@odata.nextLink"] = f"{self.url}{path}?{link}&$top={top}&$skip={skip + top}"
        if self.oversized:
            answer["padding"] = "x" * (8 * 1024 * 1024)
        return 200, [], json.dumps(answer).encode()


def _filter(expression: str) -> Callable[[GraphMessage], bool] | None:
    """The OData filters the prober sends; None for one this peer does not take (Graph: 400)."""
    if not expression:
        return lambda m: True
    if expression.startswith("receivedDateTime gt "):
        try:
            after = datetime.fromisoformat(expression.removeprefix("receivedDateTime gt "))
        except ValueError:
            return None
        return lambda m: m.received > after.timestamp()
    for prefix, attribute, starts in (
        ("startswith(subject,", "subject", True),
        ("subject eq ", "subject", False),
        ("internetMessageId eq ", "internet_message_id", False),
    ):
        if expression.startswith(prefix):
            literal = expression[len(prefix) :].removesuffix(")").strip()
            if not (len(literal) >= 2 and literal[0] == literal[-1] == "'"):
                return None
            value = literal[1:-1].replace("''", "'")
            if starts:
                return lambda m: str(getattr(m, attribute)).startswith(value)
            return lambda m: str(getattr(m, attribute)) == value
    return None


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


@asynccontextmanager
async def serve_graph(peer: GraphPeer, ca: trustme.CA) -> AsyncIterator[GraphPeer]:
    """Serve the peer over HTTPS on 127.0.0.1 (a certificate for 127.0.0.1 and localhost from
    `ca`) until the block ends."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    port = embedded.free_port()
    with cert.private_key_and_cert_chain_pem.tempfile() as both:
        server = uvicorn.Server(
            uvicorn.Config(
                peer,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                ssl_certfile=both,
                ssl_keyfile=both,
                lifespan="off",
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            peer.url, peer.port = f"https://127.0.0.1:{port}", port
            yield peer
        finally:
            server.should_exit = True
            await task
