"""Every route the app serves (read from the Litestar app, so a new route is in this test at
once) called by every caller (tests.api.access_world.CALLERS), each answer compared with ONE
table (`ROUTES`: what docs/api.md, docs/console.md and the OpenAPI document say each role may
do). A route missing from the table fails the test, as does a table row no route serves.

For every caller: no 500; another organization's ids are a 404 (never a 403 that says they exist);
nothing another organization owns (its ids, names, e-mails) appears in any answer, nor anything
of an organization in what anyone reads without a token; a refused caller changes nothing. And:
every role of another organization gets for this one's ids the very answer a made-up id gets;
ids of this organization inside another's bodies reach nothing; every console POST needs its
CSRF token."""

import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from testkit.serving import http_client
from tests.api.access_world import CALLERS, World, build, csrf, stranger_rows
from tests.api.helpers import seed_body
from tests.api.test_roundtrip_monitors import body as roundtrip_body
from tests.conftest import PASSWORD

pytestmark = pytest.mark.breadth

Body = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    """Who may call a route and what they get.

    `who`: `public` (anyone, no token needed: every caller gets `ok`), `any` (every role of the
    organization), `writer` (member and admin; readonly 403), `admin` (owner and admin; member
    and readonly 403), `fleet` (the deployment's operators, whatever their role, and owners and
    admins, who read their own countries; member and readonly 403). The operator caller is a
    member otherwise. Callers without a valid token get 401 under /api, a redirect to the login
    form (303) under /console. `stranger`: what the other organization's admin gets, naming this
    organization's rows (default: 404 when the path names one, else `ok` in its own org)."""

    who: str
    ok: int
    json: Body | None = None
    form: Body | None = None
    stranger: int | None = None
    params: dict[str, str] | None = None  # path parameters other than the world's
    query: str = ""


def _seed(kind: str) -> Body:
    return lambda w: seed_body(kind, w.org)


V3 = {"billing_plancode": "UBM - A/A", "name": "v3", "hostname": "mail.example.com"}
LOGIN: Body = lambda w: {"email": w.org.emails["readonly"], "password": PASSWORD}  # noqa: E731
NOTICE_UPDATE: Body = lambda w: {"state": "monitoring", "body": "Better"}  # noqa: E731
WINDOW: Body = lambda w: {  # noqa: E731
    "monitorId": w.ids["smtpMonitorPublicId"],
    "startsAt": "2031-01-01T00:00:00Z",
    "endsAt": "2031-01-01T01:00:00Z",
}
CHANNEL: Body = lambda w: {  # noqa: E731
    "name": "another",
    "kind": "webhook",
    "url": "https://127.0.0.1:9/in",
    "secret": "k",
}
MAILBOX: Body = lambda w: {  # noqa: E731
    "host": "127.0.0.1",
    "port": 993,
    "user": "dmarc",
    "password": "********",
}
NOTICE: Body = lambda w: {  # noqa: E731
    "customerId": w.org.customer_public_id,
    "title": "Slow mail again",
    "body": "Looking",
}
EMPTY: Body = lambda w: {}  # noqa: E731
HEARTBEAT: Body = lambda w: {  # noqa: E731
    "customerId": w.org.customer_public_id,
    "name": "nightly",
    "heartbeatConfig": {"everyMinutes": 1440},
}
KINDS = {
    "smtp": "smtpMonitorPublicId",
    "imap-pop": "imapPopMonitorPublicId",
    "roundtrip": "roundtripMonitorPublicId",
}


def _monitor_routes() -> dict[str, Route]:
    table: dict[str, Route] = {}
    for kind, param in KINDS.items():
        base = f"/api/{kind}-monitors"
        one = f"{base}/{{{param}:str}}"
        create: Body = {
            "smtp": _seed("smtp"),
            "imap-pop": _seed("imap"),
            "roundtrip": lambda w: roundtrip_body(w.org),
        }[kind]
        table |= {
            f"GET {base}": Route("any", 200),
            # the stranger names this organization's customer: 404 naming customerId
            f"POST {base}": Route("writer", 201, json=create, stranger=404),
            f"GET {one}": Route("any", 200),
            f"PATCH {one}": Route("writer", 200, json=lambda w: {"name": "renamed"}),
            f"DELETE {one}": Route("writer", 204),
            f"GET {one}/results": Route("any", 200),
            f"GET {one}/uptime": Route("any", 200),
            f"GET {one}/countries": Route("any", 200),
            # without a pipeline (NATS) in this app: 503 once past the role check
            f"POST {one}/trigger-check": Route("writer", 503),
            f"GET {one}/incidents": Route("any", 200),
            f"GET {one}/alert-history": Route("any", 200),
            f"GET {one}/alert-settings": Route("any", 200),
            f"PUT {one}/alert-settings": Route(
                "writer", 200, json=lambda w: {"downAfterRounds": 3}
            ),
            f"GET {one}/login-backoff": Route("any", 200),
            f"GET {one}/posture": Route("any", 200),
            f"GET {one}/blocklists": Route("any", 200),
        }
    table["GET /api/roundtrip-monitors/{roundtripMonitorPublicId:str}/delivery"] = Route("any", 200)
    one = "/api/heartbeat-monitors/{heartbeatMonitorPublicId:str}"
    table |= {
        "GET /api/heartbeat-monitors": Route("any", 200),
        "POST /api/heartbeat-monitors": Route("writer", 201, json=HEARTBEAT, stranger=404),
        f"GET {one}": Route("any", 200),
        f"PATCH {one}": Route("writer", 200, json=lambda w: {"name": "renamed"}),
        f"DELETE {one}": Route("writer", 204),
    }
    return table


ROUTES: dict[str, Route] = {
    **_monitor_routes(),
    # --- accounts
    "POST /api/auth/login": Route("public", 200, json=LOGIN),
    "POST /api/auth/logout": Route("any", 204),
    "GET /api/auth/me": Route("any", 200),
    "GET /api/customers": Route("any", 200),
    "POST /api/customers": Route("admin", 201, json=lambda w: {"name": f"c-{uuid.uuid4()}"}),
    "GET /api/customers/{customer_id:str}": Route("any", 200),
    "GET /api/users": Route("admin", 200),
    "POST /api/users": Route(
        "admin",
        201,
        json=lambda w: {
            "email": f"new-{uuid.uuid4().hex[:8]}@example.com",
            "password": "a long enough password",
            "role": "member",
        },
    ),
    "PATCH /api/users/{userPublicId:str}": Route("admin", 200, json=lambda w: {"disabled": False}),
    "POST /api/users/{userPublicId:str}/revoke-tokens": Route("admin", 204),
    # --- AlertSite v3
    "POST /api/v3/access-tokens": Route(
        "public", 200, json=lambda w: {"username": w.org.emails["readonly"], "password": PASSWORD}
    ),
    "POST /api/v3/monitors/email-smtp": Route("writer", 200, json=lambda w: V3),
    "POST /api/v3/monitors/email-imap": Route("writer", 200, json=lambda w: V3),
    "POST /api/v3/monitors/email-pop": Route("writer", 200, json=lambda w: V3),
    "GET /api/v3/monitors": Route("any", 200),
    "GET /api/v3/monitors/{id:str}": Route("any", 200, params={"id": "v3smtp"}),
    "DELETE /api/v3/monitors/{id:str}": Route("writer", 204, params={"id": "v3smtp"}),
    "PATCH /api/v3/monitors/email-smtp/{id:str}": Route(
        "writer", 200, json=lambda w: {"port": 587}, params={"id": "v3smtp"}
    ),
    "PATCH /api/v3/monitors/email-imap/{id:str}": Route(
        "writer", 200, json=lambda w: {"port": 993}, params={"id": "v3imap"}
    ),
    "PATCH /api/v3/monitors/email-pop/{id:str}": Route(
        "writer", 200, json=lambda w: {"port": 995}, params={"id": "v3pop"}
    ),
    # --- alerting
    "GET /api/alert-settings": Route("any", 200),
    "PUT /api/alert-settings": Route("admin", 200, json=lambda w: {"downAfterRounds": 2}),
    "GET /api/incidents": Route("any", 200),
    "GET /api/maintenance-windows": Route("any", 200),
    "POST /api/maintenance-windows": Route("writer", 201, json=WINDOW, stranger=404),
    "GET /api/maintenance-windows/{windowId:str}": Route("any", 200),
    "DELETE /api/maintenance-windows/{windowId:str}": Route("writer", 204),
    "GET /api/notification-channels": Route("any", 200),
    "POST /api/notification-channels": Route("admin", 201, json=CHANNEL),
    "GET /api/notification-channels/{channelId:str}": Route("any", 200),
    "PATCH /api/notification-channels/{channelId:str}": Route(
        "admin", 200, json=lambda w: {"name": "renamed"}
    ),
    "DELETE /api/notification-channels/{channelId:str}": Route("admin", 204),
    "POST /api/notification-channels/{channelId:str}/test": Route("admin", 200),
    # another organization's customer answers as one without a page: `[]`
    "GET /api/status-notices": Route("any", 200, query="?customerId={customer}"),
    "POST /api/status-notices": Route("admin", 201, json=NOTICE, stranger=404),
    "GET /api/status-notices/{noticeId:str}": Route("any", 200),
    "POST /api/status-notices/{noticeId:str}/updates": Route("admin", 201, json=NOTICE_UPDATE),
    # --- reports
    "GET /api/report-domains": Route("any", 200),
    # a domain is named, not owned: the stranger monitors example.com too and gets its own
    # totals and token (the snapshot shows this organization's unchanged)
    "POST /api/report-domains/{domain:str}/rotate-token": Route("admin", 200, stranger=200),
    "GET /api/report-domains/{domain:str}/totals": Route("any", 200, stranger=200),
    "GET /api/report-settings": Route("any", 200),
    "PUT /api/report-settings": Route("admin", 200, json=lambda w: {"windowDays": 7}),
    "GET /api/reports": Route("any", 200),
    "GET /api/rejected-reports": Route("any", 200),
    # the stranger has no mailbox of its own
    "GET /api/report-mailbox": Route("any", 200, stranger=404),
    "PUT /api/report-mailbox": Route("admin", 200, json=MAILBOX, stranger=400),
    "DELETE /api/report-mailbox": Route("admin", 204, stranger=404),
    # no content type: 415, whoever sends it (the address is the credential)
    "POST /reports/tls/{domain:str}/{token:str}": Route("public", 415),
    # --- the deployment
    "GET /api/agents": Route("any", 503),
    "GET /api/blocklists": Route("any", 200),
    "GET /api/oracles": Route("fleet", 200),
    "GET /api/fleet": Route("fleet", 200),
    "GET /health": Route("public", 200),
    "GET /ready": Route("public", 200),
    "GET /instance-proof": Route("public", 404),  # no INSTANCE_KEY here
    "GET /metrics": Route("public", 200),
    # a scrape token, never an API token or a session
    "GET /metrics/monitors": Route("public", 401),
    "GET /metrics/reports": Route("public", 401),
    "GET /schema": Route("public", 200),
    "GET /schema/swagger": Route("public", 200),
    "GET /schema/openapi.json": Route("public", 200),
    "GET /schema/oauth2-redirect.html": Route("public", 200),
    "GET /schema/{path:str}": Route("public", 404, params={"path": "nothing-here"}),
    "GET /schema-assets/{file_path:path}": Route(
        "public", 200, params={"file_path": "swagger-ui.css"}
    ),
    "GET /": Route("public", 302),
    "GET /favicon.ico": Route("public", 204),
    # --- public status pages
    "GET /status/{slug:str}": Route("public", 200),
    "GET /status/{slug:str}/summary.json": Route("public", 200),
    "GET /status/{slug:str}/feed.atom": Route("public", 200),
    "GET /status/{slug:str}/feed.rss": Route("public", 200),
    "POST /status/{slug:str}/subscribe": Route(
        "public", 200, form=lambda w: {"email": "reader@example.com"}
    ),
    "GET /status/{slug:str}/confirm": Route("public", 200),
    "POST /status/{slug:str}/confirm": Route("public", 400, form=EMPTY),
    "GET /status/{slug:str}/unsubscribe": Route("public", 200),
    "POST /status/{slug:str}/unsubscribe": Route("public", 400, form=EMPTY),
    # --- the console (a session cookie: the same API token)
    "GET /console/login": Route("public", 200),
    "POST /console/login": Route(
        "public", 303, form=lambda w: {"email": w.org.emails["readonly"], "password": PASSWORD}
    ),
    "POST /console/logout": Route("public", 303, form=EMPTY),
    "GET /console/static/{file_path:path}": Route(
        "public", 200, params={"file_path": "console.css"}
    ),
    "GET /console": Route("any", 200),
    "GET /console/monitors.part": Route("any", 200),
    "GET /console/monitors/{monitor_id:str}": Route("any", 200),
    "GET /console/monitors/{monitor_id:str}/live": Route("any", 200),
    "POST /console/monitors/{monitor_id:str}/trigger": Route("writer", 503, form=EMPTY),
    "POST /console/monitors/{monitor_id:str}/pause": Route("writer", 303, form=EMPTY),
    "POST /console/monitors/{monitor_id:str}/resume": Route("writer", 303, form=EMPTY),
    # a monitor of its own: the API's DELETE took the other
    "POST /console/monitors/{monitor_id:str}/delete": Route(
        "writer", 303, form=EMPTY, params={"monitor_id": "spare_monitor"}
    ),
    "GET /console/monitors/{monitor_id:str}/edit": Route("writer", 200),
    "POST /console/monitors/{monitor_id:str}/edit": Route("writer", 400, form=EMPTY),
    "GET /console/new/{kind:str}": Route("writer", 200, params={"kind": "smtp"}),
    "POST /console/new/{kind:str}": Route("writer", 400, form=EMPTY, params={"kind": "smtp"}),
    "GET /console/agents": Route("any", 200),
    "GET /console/incidents": Route("any", 200),
    "GET /console/incidents/{incident_id:str}": Route(
        "any", 404, params={"incident_id": str(uuid.uuid4())}
    ),
    "GET /console/findings": Route("any", 200),
    "GET /console/reports": Route("any", 200),
    "GET /console/reports/{domain:str}": Route("any", 200, stranger=200),
    "POST /console/reports/{domain:str}/rotate-token": Route(
        "admin", 303, form=EMPTY, stranger=303
    ),
    "GET /console/reputation": Route("any", 200),
    "GET /console/status-pages": Route("admin", 200),
    "POST /console/status-pages/{customer:str}": Route(
        "admin", 303, form=lambda w: {"slug": w.ids["slug"], "title": "Acme mail"}
    ),
    "POST /console/status-pages/{customer:str}/unpublish": Route("admin", 303, form=EMPTY),
    "POST /console/status-pages/{customer:str}/notices": Route(
        "admin",
        303,
        form=lambda w: {
            "title": "From the console",
            "body": "Looking",
            "impact": "minor",
            "state": "investigating",
        },
    ),
    "POST /console/status-notices/{notice:str}/updates": Route(
        "admin", 303, form=lambda w: {"state": "resolved", "body": "Fixed"}
    ),
    "GET /console/scrape-tokens": Route("admin", 200),
    "POST /console/scrape-tokens": Route("admin", 200, form=lambda w: {"name": "p"}),
    # deletes only the caller's organization's: another's id deletes nothing, as an unknown one
    "POST /console/scrape-tokens/{token_id:str}/delete": Route(
        "admin", 303, form=EMPTY, stranger=303
    ),
    "GET /console/channels": Route("any", 200),
    "POST /console/channels": Route(
        "admin",
        303,
        form=lambda w: {
            "name": "c",
            "kind": "webhook",
            "url": "https://127.0.0.1:9/",
            "secret": "k",
        },
    ),
    "POST /console/channels/{channel_id:str}/test": Route("admin", 200, form=EMPTY),
    "POST /console/channels/{channel_id:str}/choose": Route("admin", 303, form=EMPTY),
    "POST /console/channels/{channel_id:str}/delete": Route(
        "admin", 303, form=EMPTY, params={"channel_id": "slack"}
    ),
}

_PARAM = re.compile(r"\{([^:}]+):[^}]+\}")


def _order(key: str) -> tuple[int, str]:
    """Reads first, then writes (a report before its token is rotated), then deletes, the
    caller's own logout last."""
    method, path = key.split(" ", 1)
    if path.startswith("/reports/"):
        return (1, key)
    if "logout" in path:
        return (4, key)
    if method == "DELETE" or path.endswith("/delete") or path.endswith("/unpublish"):
        return (3, key)
    return (0 if method == "GET" else 2, key)


def _names_a_row(path: str, route: Route, world: World) -> bool:
    """Whether the path names one of the organization's rows (not a kind, file or made-up id)."""
    params = route.params or {}
    return any(params.get(p, p) in world.ids for p in _PARAM.findall(path))


def expected(key: str, route: Route, caller: str, world: World) -> int:
    path = key.split(" ", 1)[1]
    if route.who == "public":
        return route.ok
    if caller in ("anonymous", "revoked", "expired"):
        if path.startswith("/console"):
            return 401 if path.endswith(".part") else 303
        return 401
    if caller == "stranger":
        if route.stranger is not None:
            return route.stranger
        return 404 if _names_a_row(path, route, world) else route.ok
    allowed = {
        "any": ("readonly", "member", "operator", "admin"),
        "writer": ("member", "operator", "admin"),
        "admin": ("admin",),
        "fleet": ("operator", "admin"),
    }[route.who]
    return route.ok if caller in allowed else 403


def _url(key: str, route: Route, world: World) -> str:
    path = key.split(" ", 1)[1]

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        given = (route.params or {}).get(name)
        if given is not None:
            return world.ids.get(given, given)
        return world.ids[name]

    return _PARAM.sub(fill, path) + route.query.format(customer=world.org.customer_public_id)


@pytest.fixture
async def client(matrix_app: tuple[str, list[str]]) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=matrix_app[0], timeout=30) as c:
        yield c


def test_every_route_served_is_in_the_table_and_no_row_is_stale(
    matrix_app: tuple[str, list[str]],
) -> None:
    served = set(matrix_app[1])
    assert sorted(served - set(ROUTES)) == [], "routes with no row in ROUTES"
    assert sorted(set(ROUTES) - served) == [], "rows in ROUTES no route serves"


async def call(
    http: httpx.AsyncClient, world: World, key: str, route: Route, caller: str
) -> httpx.Response:
    method, path = key.split(" ", 1)
    url = _url(key, route, world)
    console = path.startswith("/console") or path.startswith("/status")
    headers = world.cookies(caller) if console else world.bearer(caller)
    if route.form is not None or (console and method == "POST"):
        form = route.form(world) if route.form is not None else {}
        if caller in world.csrf:
            form["_csrf_token"] = world.csrf[caller][1]
        return await http.request(method, url, data=form, headers=headers)
    body = route.json(world) if route.json is not None else None
    return await http.request(method, url, json=body, headers=headers)


def _foreign_marks(world: World) -> list[str]:
    """What names the other organization, which no answer to this one's callers may contain."""
    return [
        world.stranger.org_name,
        world.stranger.customer_public_id,
        *world.stranger.emails.values(),
        *world.foreign,
    ]


def _own_marks(world: World) -> list[str]:
    """What names this organization, which no answer to the stranger may contain."""
    return [
        world.org.org_name,
        world.org.customer_public_id,
        *world.org.emails.values(),
        # the public UUIDs (a number such as an AlertSite id is in many a text)
        *(v for k, v in world.ids.items() if len(v) == 36 and k != "token"),
    ]


SNAPSHOT = [
    "/api/smtp-monitors/{smtpMonitorPublicId}",
    "/api/smtp-monitors/{spare_monitor}",
    "/api/smtp-monitors/{smtpMonitorPublicId}/alert-settings",
    "/api/imap-pop-monitors/{imapPopMonitorPublicId}",
    "/api/roundtrip-monitors/{roundtripMonitorPublicId}",
    "/api/v3/monitors/{v3smtp}",
    "/api/notification-channels/{channelId}",
    "/api/notification-channels/{slack}",
    "/api/maintenance-windows/{windowId}",
    "/api/status-notices/{noticeId}",
    "/api/report-mailbox",
    "/api/report-settings",
    "/api/alert-settings",
    "/api/report-domains",
    "/api/users",
    "/api/customers",
    "/status/{slug}/summary.json",
]


async def snapshot(http: httpx.AsyncClient, pool: asyncpg.Pool, world: World) -> list[object]:
    """What the organization's owner reads of its rows (and its scrape tokens)."""
    seen: list[object] = []
    for path in SNAPSHOT:
        r = await http.get(path.format(**world.ids), headers=world.bearer("owner"))
        seen.append((path, r.status_code, r.json()))
    async with pool.acquire() as conn:
        seen.append(
            await conn.fetchval(
                "SELECT count(*) FROM scrape_tokens WHERE organization_id = $1", world.org.org_id
            )
        )
    return seen


@pytest.mark.parametrize("caller", CALLERS)
async def test_each_caller_gets_what_the_table_says(
    client: httpx.AsyncClient, pool: asyncpg.Pool, caller: str
) -> None:
    world = await build(client, pool)
    # the stranger's own rows, which lists must not show this organization's callers
    await stranger_rows(client, world)
    before = await snapshot(client, pool, world)
    wrong: list[str] = []
    leaks: list[str] = []
    for key in sorted(ROUTES, key=_order):
        route = ROUTES[key]
        r = await call(client, world, key, route, caller)
        want = expected(key, route, caller, world)
        if r.status_code != want:
            wrong.append(f"{key}: {r.status_code} (table: {want}) {r.text[:160]!r}")
        marks = _own_marks(world) if caller == "stranger" else _foreign_marks(world)
        if route.who == "public":
            if key.split(" ", 1)[1].startswith("/status/"):
                continue  # what the organization published (a page names its notices)
            # what anyone reads (metrics, the API's document...) names no organization's rows
            marks = [*_own_marks(world), *_foreign_marks(world)]
        leaks += [f"{key}: {m}" for m in marks if m in r.text]
    assert wrong == [], "\n".join(wrong)
    assert leaks == [], leaks
    if caller in ("anonymous", "revoked", "expired", "stranger"):
        # nothing of the organization changed: every write was refused or went to its own org
        assert await snapshot(client, pool, world) == before


async def test_no_body_can_reach_another_organizations_rows(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The stranger's own rows, written with ids of this organization's monitors and customer
    in their bodies and forms: refused (a 4xx, 404 where the API names an id), and nothing of
    this organization is attached to, shown on or changed by the stranger's rows."""
    world = await build(client, pool)
    await stranger_rows(client, world)
    theirs_monitor, theirs_channel, _ = world.foreign
    before = await snapshot(client, pool, world)
    ours, our_customer = world.ids["smtpMonitorPublicId"], world.org.customer_public_id
    async with pool.acquire() as conn:
        our_numeric = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", ours
        )
        our_customer_numeric = world.org.customer_id
    auth = world.stranger.auth("owner")
    channel = {"name": "x", "kind": "webhook", "url": "https://127.0.0.1:9/", "secret": "k"}
    refusals = [
        ("POST", "/api/notification-channels", {**channel, "monitorIds": [ours]}, 404),
        (
            "POST",
            "/api/notification-channels",
            {**channel, "customerIds": [our_customer_numeric]},
            404,
        ),
        ("PATCH", f"/api/notification-channels/{theirs_channel}", {"monitorIds": [ours]}, 404),
        (
            "PATCH",
            f"/api/notification-channels/{theirs_channel}",
            {"customerIds": [our_customer_numeric]},
            404,
        ),
        ("PATCH", f"/api/smtp-monitors/{theirs_monitor}", {"dependsOn": [ours]}, 400),
        ("PATCH", f"/api/smtp-monitors/{theirs_monitor}", {"customerId": our_customer}, 404),
    ]
    wrong = []
    for method, path, body, status in refusals:
        r = await client.request(method, path, json=body, headers=auth)
        if r.status_code != status:
            wrong.append(f"{method} {path} {body}: {r.status_code} {r.text[:200]}")
    stranger = World(world.stranger, world.org, world.ids, {}, dict(world.tokens))
    stranger.tokens["owner"] = world.stranger.tokens["owner"]
    await csrf(client, stranger, "owner")
    form = {"monitor": ours, "customer": str(our_customer_numeric)}
    form["_csrf_token"] = stranger.csrf["owner"][1]
    r = await client.post(
        f"/console/channels/{theirs_channel}/choose", data=form, headers=stranger.cookies("owner")
    )
    if not 400 <= r.status_code < 500:
        wrong.append(f"choose: {r.status_code} {r.text[:200]}")
    # a page's monitors not of its customer are left out (a number says nothing of whose it is)
    slug = f"theirs-{world.stranger.org_id}"
    form = {"slug": slug, "title": "t", "monitor": str(our_numeric)}
    form["_csrf_token"] = stranger.csrf["owner"][1]
    r = await client.post(
        f"/console/status-pages/{world.stranger.customer_public_id}",
        data=form,
        headers=stranger.cookies("owner"),
    )
    assert r.status_code == 303, r.text
    page = (await client.get(f"/status/{slug}/summary.json")).json()
    assert page["services"] == [], page
    assert wrong == [], "\n".join(wrong)
    assert await snapshot(client, pool, world) == before
    r = await client.get(f"/api/notification-channels/{theirs_channel}", headers=auth)
    assert r.json()["monitorIds"] == [] and r.json()["customerIds"] == [], r.json()


async def test_every_console_post_without_its_csrf_token_is_refused(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A form posted from another site carries the session cookie but not the form's token:
    every POST under /console is then a 403 and changes nothing."""
    world = await build(client, pool)
    before = await snapshot(client, pool, world)
    wrong = []
    posts = [k for k in ROUTES if k.startswith("POST /console")]
    assert len(posts) > 15
    for key in posts:
        route = ROUTES[key]
        form = route.form(world) if route.form is not None else {}
        headers = {"Cookie": f"mp_session={world.tokens['owner']}"}
        r = await client.post(_url(key, route, world), data=form, headers=headers)
        if r.status_code != 403:
            wrong.append(f"{key}: {r.status_code}")
        # a token of another session's cookie does not do either
        headers["Cookie"] += f"; mp_csrf={world.csrf['admin'][0]}"
        form["_csrf_token"] = world.csrf["readonly"][1]
        r = await client.post(_url(key, route, world), data=form, headers=headers)
        if r.status_code != 403:
            wrong.append(f"{key} with another session's token: {r.status_code}")
    assert wrong == [], wrong
    assert await snapshot(client, pool, world) == before


def _made_up(value: str) -> str:
    """An id of the same shape as `value` that names nothing."""
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value):
        return str(uuid.uuid4())
    if value.isdigit():
        return "987654321"
    if "." in value:
        return "nobody-monitors.example"
    return value + "-none"


@pytest.mark.parametrize("role", ["readonly", "member", "admin"])
async def test_another_organizations_id_answers_as_a_made_up_one(
    client: httpx.AsyncClient, pool: asyncpg.Pool, role: str
) -> None:
    """Every role of another organization, on every route naming a row: this organization's id
    gets the very answer (status and body) a made-up id of the same shape gets, so nothing
    says the row exists (a 403 for one and a 404 for the other would)."""
    world = await build(client, pool)
    stranger = World(world.stranger, world.org, dict(world.ids), {}, {})
    stranger.tokens = {"caller": world.stranger.tokens[role]}
    await csrf(client, stranger, "caller")
    differ = []
    for key in sorted(ROUTES, key=_order):
        route = ROUTES[key]
        path = key.split(" ", 1)[1]
        if route.who == "public" or not _names_a_row(path, route, world):
            continue
        if route.stranger is not None and route.stranger < 400:
            continue  # a name both organizations use (a mail domain): each has its own
        real = await call(client, stranger, key, route, "caller")
        made_up = World(
            world.stranger,
            world.org,
            {k: _made_up(v) for k, v in world.ids.items()},
            {},
            tokens=stranger.tokens,
            csrf=stranger.csrf,
        )
        fake = await call(client, made_up, key, route, "caller")
        if (real.status_code, real.text) != (fake.status_code, fake.text):
            differ.append(f"{key}: {real.status_code} {real.text[-200:]!r} / {fake.status_code}")
    assert differ == [], "\n".join(differ)


async def test_ids_in_query_filters_answer_as_made_up_ones_for_another_organization(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Every list's id filter the OpenAPI document declares (`customerId`, `monitorId`, ...),
    given this organization's id by another's user: the answer a made-up id gets."""
    world = await build(client, pool)
    doc = (await client.get("/schema/openapi.json")).json()
    ours = {
        "monitorId": world.ids["smtpMonitorPublicId"],
        "customerId": world.org.customer_public_id,
    }
    checked, differ = 0, []
    for path, ops in doc["paths"].items():
        op = ops.get("get")
        if op is None or "{" in path:
            continue
        for parameter in op.get("parameters", []):
            name = parameter["name"]
            if parameter["in"] != "query" or name not in ours:
                continue
            answers = []
            for value in (ours[name], str(uuid.uuid4())):
                r = await client.get(path, params={name: value}, headers=world.stranger.auth())
                answers.append((r.status_code, r.text))
            checked += 1
            if answers[0] != answers[1]:
                differ.append(f"{path}?{name}: {answers[0][0]} / {answers[1][0]}")
    assert checked >= 4, checked
    assert differ == [], differ
