"""One organization with one of everything the API and the console name by id (monitors of every
kind, a channel, a maintenance window, a published status page and its notice, a report domain and
mailbox, a scrape token, a spare user), its callers (every role, a revoked and an expired token,
no token) and a stranger: the admin of another organization. For the access matrix
(tests/api/test_access_matrix.py) and the secrets audit (tests/api/test_secrets_audit.py)."""

import copy
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from litestar import Litestar
from litestar.routes import HTTPRoute

from controller.access import accounts_store as accounts
from controller.access.credentials import new_token
from shared.clock import WALL
from tests.api.helpers import seed_body
from tests.api.test_roundtrip_monitors import body as roundtrip_body
from tests.conftest import Tenant, make_tenant

_CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')

# Who calls: no token; a token revoked by logout; a token past its expiry; the organization's
# readonly, member and admin users; the admin of another organization (naming this one's ids).
# `operator`: a member of the organization who is one of the deployment's operators
CALLERS = (
    "anonymous",
    "revoked",
    "expired",
    "readonly",
    "member",
    "operator",
    "admin",
    "stranger",
)


def routes(app: Litestar) -> list[str]:
    """Every `METHOD /path` the app serves (HEAD and OPTIONS, which Litestar answers for every
    path by itself, left out), as Litestar names them: `GET /api/x/{id:str}`."""
    found = {
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for method in route.route_handler_map
        if method not in ("HEAD", "OPTIONS")
    }
    return sorted(found)


@dataclass
class World:
    org: Tenant
    stranger: Tenant
    ids: dict[str, str]  # path parameter -> a value naming this organization's row
    secrets: dict[str, str]  # what -> the secret stored for it
    tokens: dict[str, str | None] = field(default_factory=dict)  # caller -> bearer token
    foreign: list[str] = field(default_factory=list)  # the ids of the stranger's own rows
    csrf: dict[str, tuple[str, str]] = field(default_factory=dict)  # caller -> (cookie, token)

    def bearer(self, caller: str) -> dict[str, str]:
        token = self.tokens[caller]
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def cookies(self, caller: str) -> dict[str, str]:
        jar = {}
        token = self.tokens[caller]
        if token is not None:
            jar["mp_session"] = token
        if caller in self.csrf:
            jar["mp_csrf"] = self.csrf[caller][0]
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}


def secret(what: str) -> str:
    """A secret no other text contains, so finding it anywhere means it leaked."""
    return f"S3cr3t-{what}-{uuid.uuid4().hex}"


async def _expect(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.text)
    if not r.content:
        return {}
    body: dict[str, Any] = r.json()
    return body


async def _window(http: httpx.AsyncClient, auth: dict[str, str], monitor: str) -> dict[str, Any]:
    """A maintenance window of `monitor`, in 2030."""
    body = {
        "monitorId": monitor,
        "startsAt": "2030-01-01T00:00:00Z",
        "endsAt": "2030-01-01T01:00:00Z",
    }
    return await _expect(await http.post("/api/maintenance-windows", json=body, headers=auth))


async def _user(pool: asyncpg.Pool, org_id: int, role: str, ttl: int) -> tuple[str, str]:
    """A new user of `org_id` with a token of `ttl` seconds: (token, public id)."""
    async with pool.acquire() as conn:
        user = await accounts.create_user(
            conn, org_id, f"{role}-{uuid.uuid4().hex[:8]}@example.com", "x", role, False
        )
        token, digest = new_token()
        await accounts.issue_token(conn, user.id, digest, ttl, WALL.now())
    return token, str(user.public_id)


async def build(http: httpx.AsyncClient, pool: asyncpg.Pool) -> World:
    org, stranger = await make_tenant(pool), await make_tenant(pool)
    auth = org.auth("owner")
    s = {
        k: secret(k)
        for k in (
            "smtp",
            "imap",
            "pop",
            "v3smtp",
            "send",
            "receive",
            "webhook",
            "slack",
            "mailbox",
            "monitor_oauth2",
        )
    }
    s["slack"] = f"https://hooks.slack.com/services/T0/B0/{s['slack']}"
    smtp_body = seed_body("smtp", org, mailDomain="example.com")
    smtp_body["smtpConfig"]["auth"]["pass"] = s["smtp"]
    smtp = await _expect(await http.post("/api/smtp-monitors", json=smtp_body, headers=auth))
    imap_body = seed_body("imap", org)
    imap_body["imapPopConfig"]["password"] = s["imap"]
    imap = await _expect(await http.post("/api/imap-pop-monitors", json=imap_body, headers=auth))
    rt_body = roundtrip_body(org)
    rt_body["roundtripConfig"]["send"]["auth"]["pass"] = s["send"]
    rt_body["roundtripConfig"]["receive"]["password"] = s["receive"]
    rt = await _expect(await http.post("/api/roundtrip-monitors", json=rt_body, headers=auth))
    hb_body = {"customerId": org.customer_id, "name": "nightly", "heartbeatConfig": {}}
    hb = await _expect(await http.post("/api/heartbeat-monitors", json=hb_body, headers=auth))
    # AlertSite's routes get monitors of their own (one per kind), so a DELETE there leaves the
    # others for the routes after it
    v3: dict[str, str] = {}
    for kind in ("smtp", "imap", "pop"):
        body = copy.deepcopy(seed_body("smtp" if kind == "smtp" else "imap", org))
        if kind == "smtp":
            body["smtpConfig"]["auth"]["pass"] = s["v3smtp"]
        else:
            body["imapPopConfig"]["protocol"] = "imap" if kind == "imap" else "pop3"
            body["imapPopConfig"]["password"] = s[kind]
            body["port"] = 993 if kind == "imap" else 995
        path = "/api/smtp-monitors" if kind == "smtp" else "/api/imap-pop-monitors"
        v3[kind] = str((await _expect(await http.post(path, json=body, headers=auth)))["id"])
    spare_monitor = await _expect(
        await http.post("/api/smtp-monitors", json=seed_body("smtp", org), headers=auth)
    )
    channel = await _expect(
        await http.post(
            "/api/notification-channels",
            json={
                "name": "on call",
                "kind": "webhook",
                "url": "https://127.0.0.1:9/in",
                "secret": s["webhook"],
                "monitorIds": [smtp["publicId"]],
            },
            headers=auth,
        )
    )
    slack = await _expect(
        await http.post(
            "/api/notification-channels",
            json={"name": "slack", "kind": "slack", "url": s["slack"]},
            headers=auth,
        )
    )
    window = await _window(http, auth, smtp["publicId"])
    await _expect(
        await http.put(
            "/api/report-mailbox",
            json={"host": "127.0.0.1", "port": 993, "user": "dmarc", "password": s["mailbox"]},
            headers=auth,
        ),
        200,
    )
    spare_token, spare_id = await _user(pool, org.org_id, "member", 3600)
    revoked, _ = await _user(pool, org.org_id, "admin", 3600)
    r = await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {revoked}"})
    assert r.status_code == 204
    expired, _ = await _user(pool, org.org_id, "admin", -1)
    slug = f"status-{org.org_id}"
    world = World(
        org,
        stranger,
        ids={
            "smtpMonitorPublicId": smtp["publicId"],
            "imapPopMonitorPublicId": imap["publicId"],
            "roundtripMonitorPublicId": rt["publicId"],
            "heartbeatMonitorPublicId": hb["publicId"],
            "channelId": channel["id"],
            "windowId": str(window["id"]),
            "domain": "example.com",
            "customer_id": org.customer_public_id,
            "customer": org.customer_public_id,
            "userPublicId": spare_id,
            "monitor_id": smtp["publicId"],
            "channel_id": channel["id"],
            "slug": slug,
            "v3smtp": v3["smtp"],
            "v3imap": v3["imap"],
            "v3pop": v3["pop"],
            "slack": slack["id"],
            "spare_monitor": spare_monitor["publicId"],
        },
        secrets=s,
        tokens={
            "anonymous": None,
            "revoked": revoked,
            "expired": expired,
            "readonly": org.tokens["readonly"],
            "member": org.tokens["member"],
            "operator": org.tokens["operator"],
            "admin": org.tokens["admin"],
            "stranger": stranger.tokens["admin"],
            "owner": org.tokens["owner"],
            "spare": spare_token,
        },
    )
    for caller in (*CALLERS, "owner"):
        await csrf(http, world, caller)
    form = {"slug": slug, "title": "Acme mail", "_csrf_token": world.csrf["owner"][1]}
    r = await http.post(
        f"/console/status-pages/{org.customer_public_id}", data=form, headers=world.cookies("owner")
    )
    assert r.status_code == 303, r.text
    notice = await _expect(
        await http.post(
            "/api/status-notices",
            json={"customerId": org.customer_public_id, "title": "Slow mail", "body": "Looking"},
            headers=auth,
        )
    )
    world.ids["noticeId"] = notice["id"]
    world.ids["notice"] = notice["id"]
    r = await http.post(
        "/console/scrape-tokens",
        data={"name": "prom", "_csrf_token": world.csrf["owner"][1]},
        headers=world.cookies("owner"),
    )
    assert r.status_code in (200, 303), r.text
    async with pool.acquire() as conn:
        world.ids["token_id"] = str(
            await conn.fetchval(
                "SELECT public_id FROM scrape_tokens WHERE organization_id = $1", org.org_id
            )
        )
    r = await http.get("/api/report-domains", headers=auth)
    assert r.status_code == 200, r.text
    (domain,) = [d for d in r.json() if d["domain"] == "example.com"]
    world.ids["token"] = domain["tlsRptHttps"].rstrip("/").rsplit("/", 1)[1]
    return world


async def stranger_rows(http: httpx.AsyncClient, world: World) -> None:
    """Rows of the stranger's own (a monitor naming the same mail domain, a channel, a window),
    which no answer to the organization's callers may show."""
    auth = world.stranger.auth("owner")
    body = seed_body("smtp", world.stranger, mailDomain="example.com", name="Stranger SMTP")
    monitor = await _expect(await http.post("/api/smtp-monitors", json=body, headers=auth))
    channel = await _expect(
        await http.post(
            "/api/notification-channels",
            json={
                "name": "theirs",
                "kind": "webhook",
                "url": "https://127.0.0.1:9/",
                "secret": "k",
            },
            headers=auth,
        )
    )
    window = await _window(http, auth, monitor["publicId"])
    world.foreign += [monitor["publicId"], channel["id"], str(window["id"])]


async def csrf(http: httpx.AsyncClient, world: World, caller: str) -> None:
    """The console's CSRF cookie and form token for `caller` (the login form, open to anyone)."""
    r = await http.get("/console/login", headers=world.cookies(caller))
    found = _CSRF_FIELD.search(r.text)
    assert found, r.text[:300]
    cookie = next(
        h.split(";", 1)[0].partition("=")[2]
        for h in r.headers.get_list("set-cookie")
        if h.startswith("mp_csrf=")
    )
    world.csrf[caller] = (cookie, found.group(1))
