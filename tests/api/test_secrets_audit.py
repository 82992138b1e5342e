"""Secrets over the HTTP API, as an attacker reading answers and a reader of the logs would look:
channel secrets and Slack URLs, monitors' passwords (SMTP, IMAP, POP3, AlertSite, both legs of a
round trip), an OAuth2 grant's client secret and the report mailbox's password.

- Set through a real API process whose every logger (the dependencies' too) writes at DEBUG
  (tests.api.log_server), then read back through every GET route the access matrix lists, by
  every role, and sent again inside bodies the API refuses (so an error that echoes its input
  would show it): no answer and no log line holds any of them.
- The OpenAPI document's examples show a secret only as the mask.
- A secret never follows a changed destination: each way of moving one without sending it again
  (the native and AlertSite PATCHes, a channel's URL, the report mailbox's PUT, the console's
  edit form) is refused naming the secret's field, and changes nothing.
- A receiver URL's own token (a webhook's `?token=`, a path token, Alertmanager's user info) is
  shown to no role, on no page and in no export; the mask sent back keeps it."""

import asyncio
import base64
import copy
import re
import sys
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from controller.ascode import channels as channel_file
from controller.settings import ControllerSettings
from controller.web.app import create_app
from testkit.serving import http_client, serve_app
from tests.api.access_world import World, build, secret
from tests.api.helpers import MASK, seed_body
from tests.api.test_access_matrix import ROUTES, call
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import form_values

pytestmark = pytest.mark.breadth

GRANT = {
    "mechanism": "XOAUTH2",
    "grant": "client_credentials",
    "provider": "custom",
    "tokenUrl": "https://127.0.0.1:9/token",
    "clientId": "probe-app",
    "scopes": ["https://outlook.office.com/.default"],
}
# Where an API document or answer keeps a secret: the mask or null there, never a value.
SECRET_KEYS = {"pass", "password", "secret", "clientSecret", "privateKey", "refreshToken"}


def _read(path: str) -> str:
    return Path(path).read_text()


@pytest.fixture(scope="module")
async def logged(
    database_url: str, settings: ControllerSettings
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process, str]]:
    """The API in a process of its own logging everything at DEBUG to a file: (url, process,
    the file's path)."""
    with tempfile.NamedTemporaryFile(prefix="api-log-", suffix=".jsonl") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.api.log_server",
            database_url,
            settings.secrets.secrets_key or "",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        assert proc.stdout is not None and proc.stdin is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.startswith(b"http://"), _read(log.name)[-2000:]
        try:
            yield line.decode().strip(), proc, log.name
        finally:
            if proc.returncode is None:
                proc.stdin.close()
                await proc.wait()


def forms(value: str) -> list[str]:
    """A secret as it is and as a log line or a header could carry it."""
    return [
        value,
        urllib.parse.quote(value, safe=""),
        base64.b64encode(value.encode()).decode(),
        base64.b64encode(f"\0probe\0{value}".encode()).decode(),
    ]


async def _grant_monitor(http: httpx.AsyncClient, world: World) -> str:
    body = seed_body("imap", world.org, hostname="127.0.0.1")
    body["imapPopConfig"].pop("password")
    body["imapPopConfig"]["oauth2"] = {**GRANT, "clientSecret": world.secrets["grant"]}
    r = await http.post("/api/imap-pop-monitors", json=body, headers=world.bearer("owner"))
    assert r.status_code == 201, r.text
    assert r.json()["imapPopConfig"]["oauth2"]["clientSecret"] == MASK
    public_id: str = r.json()["publicId"]
    return public_id


def refused_bodies(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    """Requests that carry a secret and are refused for another field (or for the secret's own
    shape): an error body that echoes what it was sent would hold the secret."""
    s = secret("echo")
    world.secrets["echo"] = s
    smtp = seed_body("smtp", world.org)
    smtp["smtpConfig"]["auth"]["pass"] = s
    imap = seed_body("imap", world.org)
    imap["imapPopConfig"]["password"] = s
    one = f"/api/smtp-monitors/{world.ids['smtpMonitorPublicId']}"
    channel = f"/api/notification-channels/{world.ids['channelId']}"
    return [
        ("POST", "/api/smtp-monitors", {**smtp, "port": "not a port"}),
        ("POST", "/api/smtp-monitors", {**smtp, "hostname": "bad host"}),
        ("POST", "/api/smtp-monitors", {**smtp, "unknownField": 1}),
        (
            "POST",
            "/api/smtp-monitors",
            {**smtp, "smtpConfig": {"auth": {"user": "u", "pass": s + "\x00"}}},
        ),
        ("POST", "/api/smtp-monitors", {**smtp, "port": 99999}),
        ("POST", "/api/smtp-monitors", {**smtp, "smtpConfig": {"auth": {"user": s, "pass": [s]}}}),
        ("POST", "/api/imap-pop-monitors", {**imap, "port": 0}),
        (
            "POST",
            "/api/imap-pop-monitors",
            {
                **imap,
                "imapPopConfig": {
                    "protocol": "imap",
                    "user": "probe",
                    "oauth2": {**GRANT, "clientSecret": s, "tokenUrl": "http://127.0.0.1:9/"},
                },
            },
        ),
        (
            "PATCH",
            one,
            {
                "hostname": "moved.example.com",
                "smtpConfig": {"auth": {"user": "u", "pass": s}},
                "port": -1,
            },
        ),
        ("PATCH", one, {"smtpConfig": {"auth": {"user": "u", "pass": {"x": s}}}}),
        (
            "POST",
            "/api/notification-channels",
            {"name": "x", "kind": "webhook", "url": f"https://probe:{s}@hooks.example.com/"},
        ),
        (
            "POST",
            "/api/notification-channels",
            {"name": "x", "kind": "webhook", "url": "ftp://x/", "secret": s},
        ),
        (
            "POST",
            "/api/notification-channels",
            {"name": "x", "kind": "nope", "url": "https://a.example/", "secret": s},
        ),
        (
            "POST",
            "/api/notification-channels",
            {"name": "x", "kind": "slack", "url": f"https://0x7f.1/services/{s}"},
        ),
        (
            "POST",
            "/api/notification-channels",
            {
                "name": "x",
                "kind": "slack",
                "url": f"https://hooks.slack.com/services/{s}",
                "extra": 1,
            },
        ),
        ("PATCH", channel, {"url": f"https://10.0.0.1:99999/{s}"}),
        ("PATCH", channel, {"secret": s, "url": "not a url"}),
        ("PUT", "/api/report-mailbox", {"host": "0x7f.1", "user": "dmarc", "password": s}),
        (
            "PUT",
            "/api/report-mailbox",
            {"host": "127.0.0.1", "user": "dmarc", "password": s, "folder": "x" * 5000},
        ),
        (
            "POST",
            "/api/v3/monitors/email-smtp",
            {"name": "v", "hostname": "bad host", "password": s, "billing_plancode": "x"},
        ),
        (
            "PATCH",
            f"/api/v3/monitors/email-smtp/{world.ids['v3smtp']}",
            {"hostname": "moved.example.com", "password": {"x": s}},
        ),
        ("POST", "/api/auth/login", {"email": world.org.emails["readonly"], "password": s}),
        (
            "POST",
            "/api/v3/access-tokens",
            {"username": world.org.emails["readonly"], "password": s},
        ),
        ("POST", "/api/users", {"email": "bad", "password": s, "role": "member"}),
    ]


def _console_refusals(world: World) -> list[tuple[str, dict[str, str]]]:
    s = world.secrets["echo"]
    return [
        (
            "/console/new/smtp",
            {
                "customerId": world.org.customer_public_id,
                "name": "x",
                "hostname": "bad host",
                "smtpConfig.auth.user": "u",
                "smtpConfig.auth.pass": s,
            },
        ),
        ("/console/channels", {"name": "c", "kind": "webhook", "url": "ftp://x/", "secret": s}),
        ("/console/channels", {"name": "c", "kind": "slack", "url": f"https://0x7f.1/{s}"}),
        ("/console/login", {"email": world.org.emails["readonly"], "password": s}),
    ]


async def test_no_secret_in_any_answer_or_any_log_line(
    logged: tuple[str, asyncio.subprocess.Process, str], pool: asyncpg.Pool
) -> None:
    url, proc, log_path = logged
    answers: list[tuple[str, str]] = []
    async with http_client(base_url=url, timeout=30) as http:
        world = await build(http, pool)
        world.secrets["grant"] = secret("grant")
        await _grant_monitor(http, world)
        for i, (method, path, body) in enumerate(refused_bodies(world)):
            r = await http.request(method, path, json=body, headers=world.bearer("owner"))
            assert 400 <= r.status_code < 500, (i, method, path, r.status_code, r.text)
            answers.append((f"{method} {path} (refused)", r.text + str(r.headers)))
        # a delivery that signs with the webhook's secret (to a closed loopback port): httpx and
        # httpcore write their DEBUG lines
        r = await http.post(
            f"/api/notification-channels/{world.ids['channelId']}/test",
            headers=world.bearer("owner"),
        )
        assert r.status_code == 200 and r.json()["delivered"] is False, r.text
        answers.append(("test channel", r.text))
        for path, form in _console_refusals(world):
            form["_csrf_token"] = world.csrf["owner"][1]
            r = await http.post(path, data=form, headers=world.cookies("owner"))
            assert r.status_code in (400, 401, 403), (path, r.status_code)
            answers.append((f"POST {path} (refused)", r.text + str(r.headers)))
        for key, route in ROUTES.items():
            if not key.startswith("GET "):
                continue
            for caller in ("readonly", "admin", "owner"):
                r = await call(http, world, key, route, caller)
                assert r.status_code != 500, (key, caller, r.text)
                answers.append((f"{key} as {caller}", r.text + str(r.headers)))
        # AlertSite's list and the pages of every monitor (which the table opens one of)
        for page in [
            f"/console/monitors/{world.ids[k]}"
            for k in ("monitor_id", "roundtripMonitorPublicId", "imapPopMonitorPublicId")
        ] + [
            f"/console/monitors/{world.ids['monitor_id']}/edit",
            f"/console/monitors/{world.ids['roundtripMonitorPublicId']}/edit",
        ]:
            r = await http.get(page, headers=world.cookies("owner"))
            assert r.status_code == 200, (page, r.status_code)
            answers.append((page, r.text))
    assert proc.stdin is not None
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    log = _read(log_path)
    # the search is worth something only if the lines are there: the API's and a library's
    assert log.count("\n") > 100 and '"level":"debug"' in log, log[-2000:]
    found = [
        (what, where)
        for what, value in world.secrets.items()
        for form in forms(value)
        for where, text in answers
        if form in text
    ]
    assert found == [], found
    in_log = [
        (what, line[:300])
        for what, value in world.secrets.items()
        for form in forms(value)
        for line in log.splitlines()
        if form in line
    ]
    assert in_log == [], in_log


def _examples(node: object, at: str = "") -> list[tuple[str, object]]:
    """Every (path, value) under a key of SECRET_KEYS inside the document's examples."""
    found: list[tuple[str, object]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in SECRET_KEYS and not isinstance(v, dict | list):
                found.append((f"{at}.{k}", v))
            found += _examples(v, f"{at}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _examples(v, f"{at}[{i}]")
    return found


async def test_the_openapi_answers_show_secrets_only_as_the_mask(http: httpx.AsyncClient) -> None:
    """Request examples may carry a made-up password (the seeds' `password`); an example of an
    answer holds a secret only as the mask (or null)."""
    doc = (await http.get("/schema/openapi.json")).json()
    shown = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if not isinstance(op, dict):
                continue
            for status, response in op.get("responses", {}).items():
                for where, value in _examples(response, f"{method} {path} {status}"):
                    if value not in (MASK, None):
                        shown.append((where, value))
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        if "Create" in name or "Update" in name or "Request" in name or "Body" in name:
            continue
        for where, value in _examples(schema.get("examples", []), name):
            if value not in (MASK, None):
                shown.append((where, value))
    assert shown == [], shown


@pytest.fixture(scope="module")
async def binding_api(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The API allowing loopback endpoints (channels, mailboxes, token endpoints)."""
    allowing = settings.replace(
        notify_private_network_grants="*=127.0.0.0/8",
        reports_mailbox_allow_private=True,
        oauth2_token_hosts="127.0.0.1",
    )
    async with serve_app(create_app(allowing, pool)) as url:
        yield url


# Each way a stored secret could be made to follow a new destination without being sent again:
# (name, method, path template, the body moving it, the field the refusal names, the body that
# sends the secret again and is accepted). `{id}`: the world's ids; `MASK`: the mask sent back.
MOVES: list[tuple[str, str, str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "smtp hostname",
        "PATCH",
        "/api/smtp-monitors/{smtpMonitorPublicId}",
        {"hostname": "evil.example.net"},
        "smtpConfig.auth.pass",
        {"hostname": "evil.example.net", "smtpConfig": {"auth": {"user": "username", "pass": "n"}}},
    ),
    (
        "smtp port with the mask",
        "PATCH",
        "/api/smtp-monitors/{smtpMonitorPublicId}",
        {"port": 2525, "smtpConfig": {"auth": {"user": "username", "pass": MASK}}},
        "smtpConfig.auth.pass",
        {"port": 2525, "smtpConfig": {"auth": {"user": "username", "pass": "n"}}},
    ),
    (
        "imap hostname",
        "PATCH",
        "/api/imap-pop-monitors/{imapPopMonitorPublicId}",
        {"hostname": "evil.example.net"},
        "imapPopConfig.password",
        {
            "hostname": "evil.example.net",
            "imapPopConfig": {"protocol": "imap", "user": "monitor@example.com", "password": "n"},
        },
    ),
    (
        "round trip mailbox host",
        "PATCH",
        "/api/roundtrip-monitors/{roundtripMonitorPublicId}",
        {"roundtripConfig": {"receive": {"hostname": "evil.example.net"}}},
        "roundtripConfig.receive.password",
        {"roundtripConfig": {"receive": {"hostname": "evil.example.net", "password": "n"}}},
    ),
    (
        "oauth2 token endpoint",
        "PATCH",
        "/api/imap-pop-monitors/{grant}",
        {"imapPopConfig": {"oauth2": {**GRANT, "tokenUrl": "https://127.0.0.1:10/token"}}},
        "imapPopConfig.oauth2.clientSecret",
        {
            "imapPopConfig": {
                "oauth2": {**GRANT, "tokenUrl": "https://127.0.0.1:10/token", "clientSecret": "n"}
            }
        },
    ),
    (
        "AlertSite hostname",
        "PATCH",
        "/api/v3/monitors/email-smtp/{v3smtp}",
        {"hostname": "evil.example.net"},
        "password",
        {"hostname": "evil.example.net", "password": "n"},
    ),
    (
        "channel URL",
        "PATCH",
        "/api/notification-channels/{channelId}",
        {"url": "https://127.0.0.2:9/in", "secret": MASK},
        "secret",
        {"url": "https://127.0.0.2:9/in", "secret": "n"},
    ),
    (
        "report mailbox host",
        "PUT",
        "/api/report-mailbox",
        {"host": "127.0.0.2", "port": 993, "user": "dmarc", "password": MASK},
        "password",
        {"host": "127.0.0.2", "port": 993, "user": "dmarc", "password": "n"},
    ),
]


def _patched(body: dict[str, Any], merge: dict[str, Any]) -> dict[str, Any]:
    """A round trip's PATCH sends its whole config (the stored one with the change)."""
    out = copy.deepcopy(body)
    for k, v in merge.items():
        out[k] = _patched(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("move", MOVES, ids=[m[0] for m in MOVES])
async def test_a_secret_never_follows_a_changed_destination(
    binding_api: str,
    pool: asyncpg.Pool,
    move: tuple[str, str, str, dict[str, Any], str, dict[str, Any]],
) -> None:
    _, method, template, moving, field, again = move
    async with http_client(base_url=binding_api, timeout=30) as http:
        world = await build(http, pool)
        world.secrets["grant"] = secret("grant")
        world.ids["grant"] = await _grant_monitor(http, world)
        path = template.format(**world.ids)
        owner = world.bearer("owner")
        before = await http.get(path.replace("/email-smtp", ""), headers=owner)
        if "roundtrip" in path:
            stored = before.json()["roundtripConfig"]
            moving = {"roundtripConfig": _patched(stored, moving["roundtripConfig"])}
            again = {"roundtripConfig": _patched(stored, again["roundtripConfig"])}
        writers = ("member", "admin", "owner") if "/api/notification" not in path else ("admin",)
        for who in writers if "report-mailbox" not in path else ("owner",):
            r = await http.request(method, path, json=moving, headers=world.bearer(who))
            assert r.status_code == 400, (who, r.text)
            said = r.json()
            named = said.get("fields") or [e.get("field") for e in said.get("errors", [])]
            assert field in named or field in r.text, (who, said)
        after = await http.get(path.replace("/email-smtp", ""), headers=owner)
        assert after.json() == before.json()  # nothing moved
        r = await http.request(method, path, json=again, headers=owner)
        assert r.status_code == 200, r.text


# A channel whose URL carries its own token: (kind, URL with `{token}`, stored by hand (the API
# refuses user info: a row stored before that check), what every role is shown). These tests of
# one channel run in an organization holding its users and that channel only (make_tenant).
TOKEN_URLS = [
    ("webhook", "https://127.0.0.1:9/hooks?token={token}", False, f"https://127.0.0.1:9/{MASK}"),
    ("webhook", "https://127.0.0.1:9/api/webhooks/1/{token}", False, f"https://127.0.0.1:9/{MASK}"),
    ("alertmanager", "https://am:{token}@127.0.0.1:9093/", True, f"https://127.0.0.1:9093/{MASK}"),
    ("opsgenie", "https://127.0.0.1:9/v2/{token}", False, f"https://127.0.0.1:9/{MASK}"),
]


async def _channel(http: httpx.AsyncClient, org: Tenant, body: dict[str, Any]) -> str:
    r = await http.post("/api/notification-channels", json=body, headers=org.auth("owner"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _everything_shown(http: httpx.AsyncClient, org: Tenant, channel: str) -> str:
    """What readers see of the organization's channels: the API's answers to every role, the
    console page and the `export` of the list."""
    seen = []
    for role in ("readonly", "member", "admin", "owner"):
        one = await http.get(f"/api/notification-channels/{channel}", headers=org.auth(role))
        listed = await http.get("/api/notification-channels", headers=org.auth(role))
        session = {"Cookie": f"mp_session={org.tokens[role]}"}
        page = await http.get("/console/channels", headers=session)
        assert one.status_code == listed.status_code == page.status_code == 200, role
        seen += [one.text, listed.text, page.text]
    seen.append(channel_file.export_text(listed.json()["items"]))
    return "\n".join(seen)


@pytest.mark.parametrize(("kind", "template", "by_hand", "shown"), TOKEN_URLS)
async def test_a_receiver_urls_token_is_shown_to_no_one(
    binding_api: str, pool: asyncpg.Pool, kind: str, template: str, by_hand: bool, shown: str
) -> None:
    """A URL that may carry a token (a query, a path, user info) is shown as its scheme, host
    and port and the mask: by the API to every role, on the console page, in `export`. What is
    stored, and so sent to, stays the whole URL."""
    token = secret("hook")
    url = template.format(token=token)
    async with http_client(base_url=binding_api, timeout=30) as http:
        org = await make_tenant(pool)
        body = {"name": "receiver", "kind": kind, "url": "https://127.0.0.1:9093/"}
        body["secret"] = "signing-key"
        if not by_hand:
            body["url"] = url
        channel = await _channel(http, org, body)
        if by_hand:
            await pool.execute(
                "UPDATE notification_channels SET url = $2, url_shown = $2 WHERE public_id = $1",
                channel,
                url,
            )
        seen = await _everything_shown(http, org, channel)
        one = await http.get(f"/api/notification-channels/{channel}", headers=org.auth("owner"))
    assert token not in seen
    assert one.json()["url"] == shown
    assert (
        await pool.fetchval("SELECT url FROM notification_channels WHERE public_id = $1", channel)
        == url
    )


async def test_a_kinds_default_url_and_a_bare_host_are_shown_whole(
    binding_api: str, pool: asyncpg.Pool
) -> None:
    async with http_client(base_url=binding_api, timeout=30) as http:
        org = await make_tenant(pool)
        pager = await _channel(http, org, {"name": "p", "kind": "pagerduty", "secret": "rk"})
        bare = await _channel(
            http, org, {"name": "a", "kind": "alertmanager", "url": "https://127.0.0.1:9093"}
        )
        shown = [
            (
                await http.get(f"/api/notification-channels/{c}", headers=org.auth("readonly"))
            ).json()["url"]
            for c in (pager, bare)
        ]
    assert shown == ["https://events.pagerduty.com/v2/enqueue", "https://127.0.0.1:9093"]


async def test_a_masked_url_keeps_the_stored_one_and_its_secret(
    binding_api: str, pool: asyncpg.Pool
) -> None:
    """The shown (masked) URL sent back keeps the stored URL, as Slack's mask does; another URL
    is a change, which needs the secret bound to the URL sent again; a URL ending in the mask
    is never stored."""
    token = secret("hook")
    url = f"https://127.0.0.1:9/hooks?token={token}"
    masked = f"https://127.0.0.1:9/{MASK}"
    async with http_client(base_url=binding_api, timeout=30) as http:
        org = await make_tenant(pool)
        body = {"name": "receiver", "kind": "webhook", "url": url, "secret": "signing-key"}
        channel = await _channel(http, org, body)
        path, admin = f"/api/notification-channels/{channel}", org.auth("admin")

        async def stored() -> tuple[str, str]:
            row = await pool.fetchrow(
                "SELECT url, secret FROM notification_channels WHERE public_id = $1", channel
            )
            assert row is not None
            return row["url"], row["secret"]

        before = await stored()
        kept = await http.patch(path, json={"url": masked, "name": "renamed"}, headers=admin)
        assert kept.status_code == 200, kept.text
        assert kept.json()["url"] == masked and await stored() == before
        same = await http.patch(path, json={"url": url}, headers=admin)
        assert same.status_code == 200, same.text
        assert await stored() == before
        for to in (f"https://127.0.0.1:9/hooks?token={token}x", "https://127.0.0.2:9/"):
            refused = await http.patch(path, json={"url": to, "secret": MASK}, headers=admin)
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "secret_required"
            assert await stored() == before
        elsewhere = await http.patch(
            path, json={"url": f"https://127.0.0.2:9/{MASK}", "secret": "new-key"}, headers=admin
        )
        assert elsewhere.status_code == 400, elsewhere.text
        assert "url" in elsewhere.json()["fields"] and await stored() == before
        moved = await http.patch(
            path, json={"url": "https://127.0.0.2:9/new", "secret": "new-key"}, headers=admin
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["url"] == f"https://127.0.0.2:9/{MASK}"
        after = await stored()
    assert after[0] == "https://127.0.0.2:9/new" and after[1] != before[1]
    assert token not in kept.text + same.text + refused.text + moved.text


@pytest.mark.parametrize(
    ("monitor", "moved", "secret_field"),
    [
        ("smtpMonitorPublicId", {"hostname": "evil.example.net"}, "smtpConfig.auth.pass"),
        ("imapPopMonitorPublicId", {"port": "143"}, "imapPopConfig.password"),
        (
            "roundtripMonitorPublicId",
            {"roundtripConfig.receive.hostname": "evil.example.net"},
            "roundtripConfig.receive.password",
        ),
    ],
)
async def test_the_console_edit_form_never_moves_a_kept_secret(
    binding_api: str, pool: asyncpg.Pool, monitor: str, moved: dict[str, str], secret_field: str
) -> None:
    """The edit form as the page fills it (the secret left empty: "leave empty to keep"), with
    the destination changed: a 400 at the secret's field, nothing stored; typed again, saved."""
    async with http_client(base_url=binding_api, timeout=30) as http:
        world = await build(http, pool)
        edit = f"/console/monitors/{world.ids[monitor]}/edit"
        page = await http.get(edit, headers=world.cookies("member"))
        assert page.status_code == 200, page.text[:300]
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        shown = form_values(page.text)
        assert shown.get(secret_field, "") == ""  # never put into the page
        before = await http.get(
            f"/api/{'imap-pop' if 'imap' in monitor else monitor[:-15]}-monitors/"
            f"{world.ids[monitor]}",
            headers=world.bearer("owner"),
        )
        form = {**shown, **moved, "_csrf_token": world.csrf["member"][1]}
        r = await http.post(edit, data=form, headers=world.cookies("member"))
        assert r.status_code == 400, r.text[:300]
        assert f'id="err-{secret_field.replace(".", "-")}"' in r.text, r.text[-2000:]
        after = await http.get(str(before.url), headers=world.bearer("owner"))
        assert after.json() == before.json()
        form[secret_field] = "typed again"
        r = await http.post(edit, data=form, headers=world.cookies("member"))
        assert r.status_code == 303, r.text[-2000:]
