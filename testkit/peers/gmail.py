"""A loopback Gmail API peer (HTTPS, state in memory) that answers as Google documents it, for
the Gmail legs of a round trip (agent/probers/gmail.py):

- `POST /token`: Google's token endpoint: the `refresh_token` grant, and a service account's
  JWT bearer assertion (RFC 7523, domain-wide delegation: `sub` the mailbox, `aud` this
  endpoint, `scope` naming Gmail's; checked with joserfc); 200 with `access_token`, one of a
  service account for its `sub` only;
- `POST /gmail/v1/users/{userId}/messages/send` `{"raw": base64url}`: 200 with the sent
  message's `id`, `threadId`, `labelIds`; delivered to the recipient's mailbox here;
- `GET /gmail/v1/users/{userId}/messages`: `messages` (`id`, `threadId`), `nextPageToken`,
  `resultSizeEstimate`; `maxResults` 100 unless given (at most 500), newest first; SPAM and
  TRASH only with `includeSpamTrash=true`; `q` takes words (each in the message's headers or
  body), `in:`/`-in:` a label and `after:` epoch seconds;
- `GET /gmail/v1/users/{userId}/messages/{id}?format=metadata&metadataHeaders=…`: `id`,
  `labelIds`, `internalDate` (epoch ms, as text), `payload.headers` (only those named);
- `POST …/messages/{id}/trash`: 200, the message labelled TRASH only;
- `DELETE …/messages/{id}`: 204.

`userId` is an address of `users` or `me` (the token's user). Quota as the reference says: each
call costs its method's units (send 100, list 5, get 5, trash 5, delete 10) from the user's
`units_per_minute` (6,000); past it, 429 `userRateLimitExceeded` with `Retry-After`. A token it
did not issue, or any token once `expired` is set, is 401 (`UNAUTHENTICATED`).

Faults, switchable per test: `throttle` (429 `rateLimitExceeded`), `slow_s` (each answer
waits), `odd` (a list answer not of Gmail's shape), `oversized` (a list answer padded past
any sane size).
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
from email.parser import BytesParser
from email.policy import compat32
from typing import Any
from urllib.parse import parse_qs, unquote

import trustme
import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from shared import embedded

PAGE_DEFAULT = 100
PAGE_MAX = 500
UNITS: dict[str, int] = {
    "send": 100,
    "list": 5,
    "get": 5,
    "trash": 5,
    "delete": 10,
    "getProfile": 1,
    "labels.get": 1,
}
UNITS_PER_MINUTE = 6_000  # per user per minute and project, as Google publishes it in 2026
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# An 8 MiB list answer, made once: the peer's own memory stays flat however often it is sent.
_OVERSIZED = b'{"messages": [], "padding": "' + b"x" * (8 * 1024 * 1024) + b'"}'
GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.modify"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass
class GmailMessage:
    id: str
    headers: list[tuple[str, str]]
    body: str
    labels: list[str]
    received: float  # epoch seconds: the order of a listing (newest first)

    def text(self) -> str:
        return "\n".join(f"{n}: {v}" for n, v in self.headers) + "\n" + self.body


@dataclass
class GmailPeer:
    """The domain's mailboxes (`users`) and the OAuth2 client whose refresh token it takes."""

    users: set[str]
    client_id: str = "gmail-client"
    client_secret: str = "gmail-secret"
    refresh_token: str = "refresh-1"
    # Service accounts with domain-wide delegation: their client id (`iss`) → public key.
    service_accounts: dict[str, RSAKey | ECKey] = field(default_factory=dict)
    auth_results: str = "mx.google.com; spf=pass smtp.mailfrom=example.test; dkim=pass"
    spam: bool = False  # deliver labelled SPAM
    # Each delivery also files this many newer messages quoting its body without its headers
    # (replies, a list's digest): a search for the probe's token finds them too.
    echoes: int = 0
    units_per_minute: int = UNITS_PER_MINUTE
    # Faults.
    throttle: bool = False
    retry_after_s: int = 30
    expired: bool = False
    slow_s: float = 0.0
    odd: bool = False
    oversized: bool = False
    padding: int = 0  # bytes each list answer carries beside its messages
    # What happened.
    tokens: dict[str, str] = field(default_factory=dict)  # token → the user it was issued for
    calls: list[str] = field(default_factory=list)
    sent: int = 0
    units: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # user → (at, cost)
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    url: str = ""
    port: int = 0
    mail: dict[str, list[GmailMessage]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.users = {u.lower() for u in self.users}
        for user in self.users:
            self.mail[user] = []

    def token(self, user: str = "") -> str:
        """An access token, as the token endpoint issues it."""
        token = "ya29." + secrets.token_urlsafe(24)
        self.tokens[token] = user.lower()
        return token

    def mailbox(self, user: str, label: str | None = None) -> list[GmailMessage]:
        box = self.mail[user.lower()]
        return box if label is None else [m for m in box if label in m.labels]

    def deliver(self, user: str, raw: bytes, *, received: float | None = None) -> GmailMessage:
        """File a message (its RFC 5322 bytes) as Gmail does, stamping Received and
        Authentication-Results on top."""
        parsed = BytesParser(policy=compat32).parsebytes(raw)
        stamp = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        top = [
            ("Received", f"from sender.test ([127.0.0.1]) by mx.google.com; {stamp}"),
            ("Authentication-Results", self.auth_results),
        ]
        payload = parsed.get_payload(decode=True)
        body = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        message = GmailMessage(
            id=secrets.token_hex(8),
            headers=top + [(k, str(v)) for k, v in parsed.items()],
            body=body,
            labels=["SPAM"] if self.spam else ["INBOX", "UNREAD"],
            received=time.time() if received is None else received,
        )
        self.mail[user.lower()].append(message)
        for n in range(self.echoes):
            self.mail[user.lower()].append(
                GmailMessage(
                    secrets.token_hex(8),
                    [("Subject", f"Re: digest {n}")],
                    f"> {body}",
                    ["INBOX"],
                    message.received + 1 + n,
                )
            )
        return message

    def used(self, user: str) -> int:
        """The quota units `user` spent in the last minute."""
        now = time.monotonic()
        spent = [(at, cost) for at, cost in self.units.get(user, []) if now - at < 60]
        self.units[user] = spent
        return sum(cost for _, cost in spent)

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
        mailbox = unquote(parts[4]).lower() if len(parts) > 4 and parts[3] == "users" else ""
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

    def _answer(self, method: str, path: str, query: str, body: bytes, scope: Scope) -> Answer:
        if path == "/token" and method == "POST":
            return self._token(body)
        if self.throttle:
            return self._throttled("rateLimitExceeded", "Rate Limit Exceeded")
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        token = auth.removeprefix("Bearer ")
        if self.expired or token not in self.tokens:
            return (
                401,
                [],
                _error(
                    401,
                    "Request had invalid authentication credentials.",
                    "UNAUTHENTICATED",
                    "authError",
                ),
            )
        parts = [unquote(p) for p in path.split("/") if p]
        if len(parts) < 4 or parts[:3] != ["gmail", "v1", "users"]:
            return 404, [], _error(404, "Not Found", "NOT_FOUND", "notFound")
        user = parts[3].lower()
        if user == "me":
            user = self.tokens[token]
        if user not in self.mail or self.tokens[token] not in ("", user):
            return 403, [], _error(403, "Delegation denied", "PERMISSION_DENIED", "forbidden")
        rest = parts[4:]
        method_name = _method(method, rest)
        if method_name is None:
            return 400, [], _error(400, "Invalid request", "INVALID_ARGUMENT", "badRequest")
        if self.used(user) + UNITS[method_name] > self.units_per_minute:
            return self._throttled("userRateLimitExceeded", "User-rate limit exceeded")
        self.units.setdefault(user, []).append((time.monotonic(), UNITS[method_name]))
        if method_name == "send":
            return self._send(user, body)
        if method_name == "list":
            return self._list(user, parse_qs(query))
        if method_name == "getProfile":
            profile = {"emailAddress": user, "messagesTotal": len(self.mail[user])}
            return 200, [], json.dumps(profile).encode()
        if method_name == "labels.get":
            if rest[1] != "INBOX":
                return 404, [], _error(404, "Invalid label", "NOT_FOUND", "notFound")
            inbox = len(self.mailbox(user, "INBOX"))
            label = {"id": "INBOX", "name": "INBOX", "type": "system", "messagesTotal": inbox}
            return 200, [], json.dumps(label).encode()
        found = next((m for m in self.mail[user] if m.id == rest[1]), None)
        if found is None:
            return 404, [], _error(404, "Requested entity was not found.", "NOT_FOUND", "notFound")
        if method_name == "get":
            return self._get(found, parse_qs(query))
        if method_name == "trash":
            found.labels = ["TRASH"]
            return 200, [], json.dumps({"id": found.id, "labelIds": found.labels}).encode()
        self.mail[user].remove(found)
        return 204, [], b""

    def _throttled(self, reason: str, message: str) -> Answer:
        return (
            429,
            [(b"retry-after", str(self.retry_after_s).encode())],
            _error(429, message, "RESOURCE_EXHAUSTED", reason),
        )

    def _token(self, body: bytes) -> Answer:
        """Google's token endpoint: the refresh token grant, or a JWT bearer assertion."""
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") == JWT_BEARER:
            return self._jwt_bearer(form.get("assertion", ""))
        if form.get("grant_type") != "refresh_token":
            return 400, [], json.dumps({"error": "unsupported_grant_type"}).encode()
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, [], json.dumps({"error": "invalid_client"}).encode()
        if form.get("refresh_token") != self.refresh_token:
            return 400, [], json.dumps({"error": "invalid_grant"}).encode()
        answer = {"token_type": "Bearer", "expires_in": 3599, "access_token": self.token()}
        return 200, [], json.dumps(answer).encode()

    def _jwt_bearer(self, assertion: str) -> Answer:
        """A service account's assertion, verified with its key: a token for its `sub`."""
        try:
            payload = assertion.split(".")[1]
            unverified = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            key = self.service_accounts[str(unverified["iss"])]
            claims = dict(jwt.decode(assertion, key, algorithms=["RS256", "ES256"]).claims)
            jwt.JWTClaimsRegistry(
                exp={"essential": True}, aud={"essential": True, "value": f"{self.url}/token"}
            ).validate(claims)
        except (JoseError, ValueError, KeyError, IndexError) as exc:
            answer = {"error": "invalid_grant", "error_description": str(exc)[:200]}
            return 400, [], json.dumps(answer).encode()
        user = str(claims.get("sub", "")).lower()
        if user not in self.users or GMAIL_SCOPE not in str(claims.get("scope", "")).split():
            return 400, [], json.dumps({"error": "unauthorized_client"}).encode()
        issued = {"token_type": "Bearer", "expires_in": 3599, "access_token": self.token(user)}
        return 200, [], json.dumps(issued).encode()

    def _send(self, user: str, body: bytes) -> Answer:
        try:
            raw = base64.urlsafe_b64decode(json.loads(body)["raw"] + "==")
        except (ValueError, KeyError, TypeError):
            return (
                400,
                [],
                _error(400, "Invalid raw message", "INVALID_ARGUMENT", "invalidArgument"),
            )
        parsed = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
        to = [a.strip().lower() for a in str(parsed.get("To", "")).split(",") if a.strip()]
        if not to:
            return (
                400,
                [],
                _error(400, "Recipient address required", "INVALID_ARGUMENT", "invalidArgument"),
            )
        self.sent += 1
        for address in to:
            if address in self.mail:
                self.deliver(address, raw)
        sent = {"id": secrets.token_hex(8), "threadId": secrets.token_hex(8), "labelIds": ["SENT"]}
        return 200, [], json.dumps(sent).encode()

    def _list(self, user: str, query: dict[str, list[str]]) -> Answer:
        if self.odd:
            return 200, [], b'{"messages": {"not": "a list"}}'
        keep = _search(query.get("q", [""])[0])
        spam_trash = query.get("includeSpamTrash", ["false"])[0] == "true"
        top = min(int(query.get("maxResults", [str(PAGE_DEFAULT)])[0]), PAGE_MAX)
        skip = int(query.get("pageToken", ["0"])[0] or 0)
        matching = sorted(
            (
                m
                for m in self.mail[user]
                if keep(m) and (spam_trash or not {"SPAM", "TRASH"} & set(m.labels))
            ),
            key=lambda m: -m.received,
        )
        page = matching[skip : skip + top]
        answer: dict[str, Any] = {"resultSizeEstimate": len(matching)}
        if page:
            answer["messages"] = [{"id": m.id, "threadId": m.id} for m in page]
        if skip + top < len(matching):
            answer["nextPageToken"] = str(skip + top)
        if self.oversized:
            return 200, [], _OVERSIZED
        if self.padding:
            answer["padding"] = "x" * self.padding
        return 200, [], json.dumps(answer).encode()

    def _get(self, message: GmailMessage, query: dict[str, list[str]]) -> Answer:
        named = {h.lower() for h in query.get("metadataHeaders", [])}
        headers = [
            {"name": n, "value": v} for n, v in message.headers if not named or n.lower() in named
        ]
        answer = {
            "id": message.id,
            "threadId": message.id,
            "labelIds": message.labels,
            "internalDate": str(int(message.received * 1000)),
            "payload": {"mimeType": "text/plain", "headers": headers},
        }
        return 200, [], json.dumps(answer).encode()


def _method(verb: str, rest: list[str]) -> str | None:
    """The Gmail method a call is (its quota's name), None for one this peer does not serve."""
    if rest == ["messages", "send"] and verb == "POST":
        return "send"
    if rest == ["messages"] and verb == "GET":
        return "list"
    if rest == ["profile"] and verb == "GET":
        return "getProfile"
    if len(rest) == 2 and rest[0] == "labels" and verb == "GET":
        return "labels.get"
    if len(rest) == 2 and rest[0] == "messages":
        return {"GET": "get", "DELETE": "delete"}.get(verb)
    if len(rest) == 3 and rest[0] == "messages" and rest[2] == "trash" and verb == "POST":
        return "trash"
    return None


def _search(q: str) -> Callable[[GmailMessage], bool]:
    """Gmail's search, as far as the probers use it: words, `in:`/`-in:` a label, `after:`
    epoch seconds (received after it)."""
    words: list[str] = []
    labels_in: set[str] = set()
    labels_out: set[str] = set()
    after = float("-inf")
    for term in q.split():
        if term.lower().startswith("after:") and term[6:].isdigit():
            after = int(term[6:])
        elif term.lower().startswith("-in:"):
            labels_out.add(term[4:].upper())
        elif term.lower().startswith("in:"):
            labels_in.add(term[3:].upper())
        else:
            words.append(term.strip('"').lower())

    def keep(m: GmailMessage) -> bool:
        text = m.text().lower()
        return (
            all(w in text for w in words)
            and m.received > after
            and labels_in <= set(m.labels)
            and not labels_out & set(m.labels)
        )

    return keep


def _error(code: int, message: str, status: str, reason: str) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": code,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
                "status": status,
            }
        }
    ).encode()


@asynccontextmanager
async def serve_gmail(peer: GmailPeer, ca: trustme.CA) -> AsyncIterator[GmailPeer]:
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
