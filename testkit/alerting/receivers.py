"""Loopback HTTPS receivers speaking the documented contracts of the notification channels'
endpoints: a generic webhook checking mailprobe's signature and replay window, Slack and Teams
incoming webhooks, PagerDuty's Events API v2, Opsgenie's alert API, Telegram's Bot API and
Alertmanager's v2 alerts behind a bearer token. Each records every request and keeps the state
its service would (open PagerDuty incidents by dedup_key, open Opsgenie alerts by alias,
PagerDuty change events), and an endpoint of Apprise's `json://` plugin (Basic auth, a secret
path); `fail_next` answers the next requests 503."""

import asyncio
import base64
import hashlib
import hmac
import html
import json
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import trustme

from shared import embedded
from testkit.serving import http_client
from testkit.trust import trusting

CA = trustme.CA()
APPRISE_PASSWORD = "apprise-basic-pass-never-logged"
APPRISE_PATH = "apprise-secret-path-never-logged"
_CERT = CA.issue_cert("127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost")
REPLAY_WINDOW_S = 300


def client_context() -> ssl.SSLContext:
    return trusting(CA)


def verify_signature(
    secret: str, header: str, body: bytes, now: float, window_s: int = REPLAY_WINDOW_S
) -> bool:
    """How a receiver checks `X-Mailprobe-Signature` (docs/alerts.md): `t=…,v1=…`, the HMAC
    of `t` + "." + body, and `t` within the replay window."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - stamp) > window_s:
        return False
    want = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts.get("v1", ""))


def utf16(text: str) -> int:
    """A text's length in UTF-16 code units: what Telegram counts, and never less than the
    characters the other services count (the receivers hold mailprobe to the stricter)."""
    return len(text.encode("utf-16-le")) // 2


def _slack_len(text: str) -> int:
    """A text object's length, "&", "<" and ">" counted as their escapes (the stricter
    reading of Slack's character limits)."""
    return utf16(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def _slack_text_ok(obj: Any, limit: int, kinds: tuple[str, ...]) -> bool:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return False
    text = obj.get("text")
    return isinstance(text, str) and 1 <= _slack_len(text) <= limit


def _slack_block_ok(block: dict[str, Any]) -> bool:
    """Block Kit's limits: a header's text plain_text of at most 150 characters; a section's
    text at most 3,000 and its fields at most 10 of at most 2,000 each."""
    kind = block.get("type")
    if kind == "header":
        return _slack_text_ok(block.get("text"), 150, ("plain_text",))
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            return False
        if text is not None and not _slack_text_ok(text, 3000, ("plain_text", "mrkdwn")):
            return False
        fields = fields or []
        return len(fields) <= 10 and all(
            _slack_text_ok(f, 2000, ("plain_text", "mrkdwn")) for f in fields
        )
    return kind in ("context", "divider", "actions")


TEAMS_MAX_BYTES = 28 * 1024  # a Teams message's payload


def _opsgenie_ok(doc: dict[str, Any]) -> bool:
    """The alert API's limits: message 130 characters, alias 512, description 15,000,
    entity 512, source 100, at most 20 tags of 50, details 8,000 in all."""
    limits = {"message": 130, "alias": 512, "description": 15_000, "entity": 512, "source": 100}
    if any(utf16(str(doc.get(k, ""))) > n for k, n in limits.items()):
        return False
    tags = doc.get("tags") or []
    if len(tags) > 20 or any(utf16(t) > 50 for t in tags):
        return False
    details = doc.get("details") or {}
    return sum(utf16(str(k)) + utf16(str(v)) for k, v in details.items()) <= 8000


def _telegram_entities_ok(text: str) -> bool:
    """HTML mode: only the tags mailprobe uses, each closed in order; `&` only in an
    entity; no stray `<` or `>`."""
    opened: list[str] = []
    for m in re.finditer(r"<(/?)(b|a)(?: href=\"[^\"<>]*\")?>|[<>]|&(?![#0-9A-Za-z]+;)", text):
        if m.group(2) is None:
            return False
        if m.group(1):
            if not opened or opened.pop() != m.group(2):
                return False
        else:
            opened.append(m.group(2))
    return not opened


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    kind: str
    secret: str = ""  # the signing key, routing key, API key, bot token or bearer token
    fail_next: int = 0
    # The receiver's clock, against which a signature's timestamp is checked: a sender on a
    # simulated clock is judged on that clock, as a real receiver is in step with its sender.
    now: Callable[[], float] = time.time
    tls: bool = True
    requests: list[Seen] = field(default_factory=list)
    open_alerts: dict[str, Any] = field(default_factory=dict)  # PagerDuty / Opsgenie state
    closed: list[str] = field(default_factory=list)
    changes: list[Any] = field(default_factory=list)  # PagerDuty change events
    event_ids: set[str] = field(default_factory=set)
    chats: tuple[str, ...] = ("-1001234567890",)  # Telegram: chats the bot is in
    host: str = "127.0.0.1"  # a loopback address its certificate names (127.0.0.1-3)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        base = f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"
        return {
            "webhook": f"{base}/hooks/mailprobe",
            "slack": f"{base}/services/T000/B000/XXXXsecretpathXXXX",
            "teams": f"{base}/workflows/abc/triggers/manual/paths/invoke?sig=teamsSecretSig",
            "pagerduty": f"{base}/v2/enqueue",
            "opsgenie": base,
            "telegram": base,
            "alertmanager": base,
            "apprise": f"{'jsons' if self.tls else 'json'}://probe:{APPRISE_PASSWORD}@{self.host}:"
            f"{self.port}/hooks/{APPRISE_PATH}",
        }[self.kind]

    @property
    def delivered(self) -> list[Seen]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, b"busy"
        answered: tuple[int, bytes] = getattr(self, f"_{self.kind}")(method, target, headers, body)
        return answered

    def _webhook(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        sig = headers.get("x-mailprobe-signature", "")
        if not verify_signature(self.secret, sig, body, self.now()):
            return 401, b"bad signature"
        event_id = headers.get("x-mailprobe-event", "")
        if json.loads(body)["id"] != event_id:
            return 400, b"event id header and body differ"
        self.event_ids.add(event_id)
        return 204, b""

    def _slack(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if not urlsplit(target).path.startswith("/services/"):
            return 404, b"no_service"
        try:
            doc = json.loads(body)
        except ValueError:
            return 400, b"invalid_payload"
        if not isinstance(doc.get("text"), str) or not doc["text"]:
            return 400, b"no_text"
        blocks = doc.get("blocks", [])
        if len(blocks) > 50 or not all(_slack_block_ok(b) for b in blocks):
            return 400, b"invalid_blocks"
        return 200, b"ok"

    def _teams(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if "sig=teamsSecretSig" not in target:
            return 401, b'{"error":{"code":"DirectApiAuthorizationRequired"}}'
        if len(body) > TEAMS_MAX_BYTES:
            return 413, b'{"error":{"code":"MessageSizeTooBig"}}'
        doc = json.loads(body)
        attachments = doc.get("attachments") or []
        if doc.get("type") != "message" or not attachments:
            return 400, b'{"error":{"code":"InvalidRequestContent"}}'
        att = attachments[0]
        if (
            att.get("contentType") != "application/vnd.microsoft.card.adaptive"
            or att.get("content", {}).get("type") != "AdaptiveCard"
        ):
            return 400, b'{"error":{"code":"InvalidRequestContent"}}'
        return 202, b""

    def _apprise(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """Apprise's JSON plugin: POST, Basic auth, {"version", "title", "message", "type"}."""
        want = "Basic " + base64.b64encode(f"probe:{APPRISE_PASSWORD}".encode()).decode()
        if headers.get("authorization") != want:
            return 401, b'{"error":"unauthorized"}'
        if method != "POST" or urlsplit(target).path != f"/hooks/{APPRISE_PATH}":
            return 404, b""
        doc = json.loads(body)
        if not doc.get("message") or doc.get("version") != "1.0":
            return 400, b'{"error":"bad body"}'
        return 200, b'{"ok":true}'

    def _pagerduty(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if method == "POST" and urlsplit(target).path == "/v2/change/enqueue":
            return self._pagerduty_change(body)
        if method != "POST" or urlsplit(target).path != "/v2/enqueue":
            return 404, b""
        doc = json.loads(body)
        errors = []
        if doc.get("routing_key") != self.secret:
            # echoed, as some receivers do: the sender must mask it in what it records
            errors.append(f"'routing_key' {doc.get('routing_key')!r} is invalid")
        action, key = doc.get("event_action"), doc.get("dedup_key")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        if not key or len(key) > 255:
            errors.append("'dedup_key' is missing or too long")
        if action == "trigger":
            p = doc.get("payload") or {}
            if not p.get("summary") or utf16(p["summary"]) > 1024 or not p.get("source"):
                errors.append("'payload.summary' and 'payload.source' are required")
            if p.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("'payload.severity' is invalid")
        if errors:
            out = {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }
            return 400, json.dumps(out).encode()
        if action == "trigger":
            self.open_alerts[key] = doc
        elif action == "resolve" and self.open_alerts.pop(key, None) is not None:
            self.closed.append(key)
        out = {"status": "success", "message": "Event processed", "dedup_key": key}
        return 202, json.dumps(out).encode()

    def _pagerduty_change(self, body: bytes) -> tuple[int, bytes]:
        """Change Events: routing_key and payload.summary required; no incident, no dedup."""
        doc = json.loads(body)
        p = doc.get("payload") or {}
        if doc.get("routing_key") != self.secret:
            return 400, b'{"status":"invalid event","errors":["routing_key is invalid"]}'
        if not p.get("summary") or utf16(p["summary"]) > 1024 or "event_action" in doc:
            return 400, b'{"status":"invalid event","errors":["payload.summary is required"]}'
        self.changes.append(doc)
        return 202, b'{"status":"success","message":"Change event processed"}'

    def _opsgenie(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if headers.get("authorization") != f"GenieKey {self.secret}":
            return 401, b'{"message":"Could not authenticate","took":0.0,"requestId":"r"}'
        parts = urlsplit(target)
        accepted = b'{"result":"Request will be processed","took":0.01,"requestId":"r1"}'
        doc = json.loads(body or b"{}")
        if parts.path == "/v2/alerts":
            msg = doc.get("message")
            if not msg or not _opsgenie_ok(doc):
                return 422, b'{"message":"Request body is not processable","took":0.0}'
            self.open_alerts[doc.get("alias") or msg] = doc
            return 202, accepted
        prefix, suffix = "/v2/alerts/", "/close"
        if parts.path.startswith(prefix) and parts.path.endswith(suffix):
            alias = unquote(parts.path[len(prefix) : -len(suffix)])
            if parse_qs(parts.query).get("identifierType") != ["alias"]:
                return 400, b'{"message":"identifierType must be alias here"}'
            if utf16(doc.get("note", "")) > 25_000 or utf16(doc.get("source", "")) > 100:
                return 422, b'{"message":"Request body is not processable","took":0.0}'
            if self.open_alerts.pop(alias, None) is None:
                return 404, b'{"message":"Alert does not exist"}'
            self.closed.append(alias)
            return 202, accepted
        return 404, b""

    def _alertmanager(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """Alertmanager's v2 API behind a bearer token (a proxy's, as deployments put it):
        POST /api/v2/alerts, a list of alerts with labels."""
        if headers.get("authorization") != f"Bearer {self.secret}":
            return 401, b"Unauthorized"
        if method != "POST" or urlsplit(target).path != "/api/v2/alerts":
            return 404, b""
        alerts = json.loads(body)
        if not isinstance(alerts, list) or not all("labels" in a for a in alerts):
            return 400, b'{"message":"bad alerts"}'
        return 200, b""

    def _telegram(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """The Bot API: POST /bot<token>/sendMessage, `chat_id` and `text` (HTML mode: only
        Telegram's tags, entities escaped)."""
        path = urlsplit(target).path
        if path != f"/bot{self.secret}/sendMessage":
            return 401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}'
        doc = json.loads(body)
        if doc.get("chat_id") not in self.chats:
            return 400, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}'
        text = doc.get("text", "")
        if not text or doc.get("parse_mode") != "HTML":
            return 400, b'{"ok":false,"error_code":400,"description":"Bad Request: bad text"}'
        if not _telegram_entities_ok(text):
            return (
                400,
                b'{"ok":false,"error_code":400,"description":"Bad Request: can\'t parse entities"}',
            )
        if utf16(html.unescape(re.sub(r"<[^<>]*>", "", text))) > 4096:
            return (
                400,
                b'{"ok":false,"error_code":400,"description":"Bad Request: message is too long"}',
            )
        self.open_alerts.setdefault(doc["chat_id"], []).append(text)
        return 200, b'{"ok":true,"result":{"message_id":1}}'

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, out = self.answer(method, target, headers, body)
            self.requests.append(Seen(method, target, headers, body, status))
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(out)}\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n\r\n".encode()
                + out
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Self:
        ctx = None
        if self.tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            _CERT.configure_cert(ctx)
        self._server = await asyncio.start_server(self._handle, self.host, 0, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
_AM_CONFIG = """
route:
  receiver: mailprobe-oncall
  group_by: [alertname, monitor_id]
  routes:
    - matchers: ['source="mailprobe"', 'severity="critical"']
      receiver: mailprobe-oncall
receivers:
  - name: mailprobe-oncall
"""


class Alertmanager:
    """Debian's prometheus-alertmanager on a loopback port, from a temporary directory; its
    cluster listener off (no gossip, nothing beyond loopback)."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.config = f"{workdir}/alertmanager.yml"
        Path(self.config).write_text(_AM_CONFIG)
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self.port = embedded.free_port()
        config = self.config
        self._proc = await asyncio.create_subprocess_exec(
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={self.workdir}/data",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with http_client() as client:
            for _ in range(200):
                try:
                    if (await client.get(f"{self.url}/-/ready")).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if self._proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
        raise RuntimeError("alertmanager did not become ready")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._proc is not None
        if self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
