"""Bad input on every route the access matrix lists (tests/api/test_access_matrix.ROUTES), sent
by the organization's owner, who passes every role check so the input itself is judged:

- bad ids in every path parameter naming a row (not an id, a number past bigint, SQL, NUL, 300
  characters, an unknown UUID): a 4xx, never a 500;
- every JSON body replaced by the wrong JSON type, broken JSON, an unknown field, each of its
  fields given a value of the wrong type, and a body over the size limit: a 4xx; a field
  refused is named in the answer's `fields` (or AlertSite's `errors`);
- every query parameter the OpenAPI document declares, given a wrong value: a 4xx naming it;
- every console form given over-long and control-character values: no 500."""

import copy
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from testkit.serving import http_client
from tests.api.access_world import World, build
from tests.api.test_access_matrix import _PARAM, ROUTES, Route, call
from tests.console.helpers import form_values

pytestmark = pytest.mark.breadth

BAD_IDS = [
    "not-an-id",
    "99999999999999999999999",
    "-1",
    "0",
    "1' OR '1'='1",
    "%00",
    "%25",
    "%FF%FE",
    "x" * 300,
    "00000000-0000-4000-8000-000000000000",
]


@pytest.fixture(scope="module")
async def world(matrix_app: tuple[str, list[str]], pool: asyncpg.Pool) -> AsyncIterator[World]:
    async with http_client(base_url=matrix_app[0], timeout=30) as http:
        yield await build(http, pool)


@pytest.fixture
async def client(matrix_app: tuple[str, list[str]]) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=matrix_app[0], timeout=30) as c:
        yield c


def _named(r: httpx.Response) -> list[str]:
    """The fields an error answer names: ours (`fields`) or AlertSite's (`errors[].field`)."""
    body = r.json()
    if "fields" in body:
        return [str(f) for f in body["fields"]]
    return [str(e.get("field", "")) + " " + str(e.get("message", "")) for e in body["errors"]]


def _ok(r: httpx.Response, what: str, bad: list[str]) -> None:
    if r.status_code >= 500 or r.status_code < 400:
        bad.append(f"{what}: {r.status_code} {r.text[:200]!r}")


def _mutations(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(field, a value of another JSON type) for each top-level field of `body`."""
    out: list[tuple[str, Any]] = []
    for key, value in body.items():
        if isinstance(value, bool):
            wrong: Any = "yes please"
        elif isinstance(value, int | float):
            wrong = "many"
        elif isinstance(value, str):
            wrong = {"nested": [1]}
        elif isinstance(value, list):
            wrong = 17
        elif isinstance(value, dict):
            wrong = ["not", "an", "object"]
        else:
            wrong = [None]
        out.append((key, wrong))
    return out


def _strings(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path (keys and indexes) to every string in `node`."""
    if isinstance(node, str):
        return [at]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _strings(v, (*at, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _strings(v, (*at, i))]
    return []


async def test_bad_ids_in_every_path_are_a_4xx(client: httpx.AsyncClient, world: World) -> None:
    bad: list[str] = []
    for key, route in ROUTES.items():
        method, path = key.split(" ", 1)
        # every parameter but a file's path (test_hostile_file_names_...)
        params = [p for p in _PARAM.findall(path) if ":path}" not in path]
        if not params or method == "DELETE" or "logout" in path:
            continue
        for param in params:
            for value in BAD_IDS:
                broken = Route(
                    route.who,
                    route.ok,
                    route.json,
                    route.form,
                    params={**(route.params or {}), param: value},
                    query=route.query,
                )
                r = await call(client, world, key, broken, "owner")
                # a 4xx, or the redirect of a delete that deleted nothing
                if r.status_code >= 500 or r.status_code < 300:
                    bad.append(f"{key} {param}={value[:20]}: {r.status_code} {r.text[:200]!r}")
    assert bad == [], "\n".join(bad)


async def test_bad_json_bodies_are_a_4xx_naming_the_field(
    client: httpx.AsyncClient, world: World
) -> None:
    bad: list[str] = []
    unnamed: list[str] = []
    for key, route in ROUTES.items():
        method, path = key.split(" ", 1)
        if route.json is None or route.who == "public":
            continue
        url = path
        for p in _PARAM.findall(path):
            value = (route.params or {}).get(p, p)
            url = _PARAM.sub(world.ids.get(value, value), url, count=1)
        url += route.query.format(customer=world.org.customer_public_id)
        headers = world.bearer("owner")
        valid = route.json(world)
        for what, content in (
            ("an array", b"[]"),
            ("a string", b'"x"'),
            ("null", b"null"),
            ("broken JSON", b'{"name": '),
            ("not UTF-8", b'{"name": "\xff\xfe"}'),
            ("over the limit", b'{"name": "' + b"x" * 70_000 + b'"}'),
            ("nested 5000 deep", b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
            ("a number past float", b'{"name": 1e999, "port": 1e999}'),
            ("a lone surrogate", b'{"name": "\\ud800"}'),
            ("NUL in a string", b'{"name": "a\\u0000b"}'),
        ):
            r = await client.request(
                method,
                url,
                content=content,
                headers={**headers, "content-type": "application/json"},
            )
            _ok(r, f"{key} with {what}", bad)
        r = await client.request(method, url, json={**valid, "zzUnknown": 1}, headers=headers)
        _ok(r, f"{key} with an unknown field", bad)
        if r.status_code == 400 and not any("zzUnknown" in f for f in _named(r)):
            unnamed.append(f"{key} unknown field: {r.text[:200]}")
        for field, wrong in _mutations(valid):
            body = copy.deepcopy(valid)
            body[field] = wrong
            r = await client.request(method, url, json=body, headers=headers)
            _ok(r, f"{key} {field}={wrong!r}", bad)
            if r.status_code == 400 and not any(field in f for f in _named(r)):
                unnamed.append(f"{key} {field}={wrong!r}: {r.text[:200]}")
        # every string, however deep, with a NUL (PostgreSQL stores none), alone in the body
        for where in _strings(valid):
            body = copy.deepcopy(valid)
            node = body
            for step in where[:-1]:
                node = node[step]
            node[where[-1]] += "\x00"
            r = await client.request(method, url, json=body, headers=headers)
            if r.status_code >= 500:
                bad.append(f"{key} NUL in {where}: {r.status_code} {r.text[:200]}")
    assert bad == [], "\n".join(bad)
    assert unnamed == [], "\n".join(unnamed)


async def test_wrong_query_values_are_a_4xx_naming_the_parameter(
    client: httpx.AsyncClient, world: World
) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    bad: list[str] = []
    unnamed: list[str] = []
    checked = 0
    for key, route in ROUTES.items():
        method, path = key.split(" ", 1)
        plain = _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)
        op = doc["paths"].get(plain, {}).get(method.lower())
        if op is None or method != "GET":
            continue
        for parameter in op.get("parameters", []):
            if parameter["in"] != "query":
                continue
            name, schema = parameter["name"], parameter.get("schema", {})
            kinds = {schema.get("type")} | {s.get("type") for s in schema.get("oneOf", [])}
            numeric = kinds & {"integer", "number"}
            wrongs = ["many", "-5", "9" * 30] if numeric else ["%01", "%FF%FE", "z" * 5000]
            for wrong in wrongs:
                broken = Route(route.who, route.ok, params=route.params, query=f"?{name}={wrong}")
                r = await call(client, world, key, broken, "owner")
                checked += 1
                if r.status_code >= 500:
                    bad.append(f"{key}?{name}={wrong[:10]}: {r.status_code} {r.text[:200]}")
                elif r.status_code == 400 and not any(name in f for f in _named(r)):
                    unnamed.append(f"{key}?{name}={wrong[:10]}: {r.text[:200]}")
    assert checked > 50, checked
    assert bad == [], "\n".join(bad)
    assert unnamed == [], "\n".join(unnamed)


async def test_console_forms_with_hostile_values_never_answer_500(
    client: httpx.AsyncClient, world: World
) -> None:
    bad: list[str] = []
    for key, route in ROUTES.items():
        method, path = key.split(" ", 1)
        if method != "POST" or route.form is None or "logout" in path or "delete" in path:
            continue
        if path == "/console/login":
            continue  # throttled per address: its bad input is tests/api/test_login_throttle.py
        base = route.form(world)
        for field in base:  # a NUL in one field of a form that is otherwise good

            def nul_form(w: World, f: str = field, b: dict[str, Any] = base) -> dict[str, Any]:
                return {**b, f: b[f] + "\x00"}

            nul_route = Route(route.who, route.ok, form=nul_form, params=route.params)
            r = await call(client, world, key, nul_route, "owner")
            if r.status_code >= 500 and r.status_code != route.ok:
                bad.append(f"{key} NUL in {field}: {r.status_code} {r.text[:200]}")
        for hostile in ("x" * 100_000, "\x00\x01\x1b[31m", "<script>alert(1)</script>", "é" * 3000):
            form = {k: hostile for k in [*base, "token", "email"]} | {"zz": hostile}

            def hostile_form(w: World, f: dict[str, str] = form) -> dict[str, Any]:
                return dict(f)

            hostile_route = Route(route.who, route.ok, form=hostile_form, params=route.params)
            r = await call(client, world, key, hostile_route, "owner")
            if r.status_code >= 500 and r.status_code != route.ok:
                bad.append(f"{key} {hostile[:12]!r}: {r.status_code} {r.text[:200]}")
            # the same form with bytes that are not UTF-8
            names = {p: (route.params or {}).get(p, p) for p in _PARAM.findall(path)}

            def named(m: re.Match[str], n: dict[str, str] = names) -> str:
                return world.ids.get(n[m[1]], n[m[1]])

            url = _PARAM.sub(named, path)
            raw = b"&".join(k.encode() + b"=%FF%FE" for k in [*base, "_csrf_token"])
            raw += b"&_csrf_token=" + world.csrf["owner"][1].encode()
            r = await client.post(
                url,
                content=raw,
                headers={
                    **world.cookies("owner"),
                    "content-type": "application/x-www-form-urlencoded",
                },
            )
            if r.status_code >= 500 and r.status_code != route.ok:
                bad.append(f"{key} {hostile[:12]!r}: {r.status_code} {r.text[:200]}")
            if "<script>alert(1)</script>" in r.text:
                bad.append(f"{key}: the form's value is in the page unescaped")
    assert bad == [], "\n".join(bad)


BAD_CREDENTIALS: list[bytes] = [
    b"Bearer",
    b"Bearer  \t x",
    b"Basic dXNlcjpwYXNz",
    b"Bearer \xff\xfe\x80",
    b"Bearer " + b"A" * 16_000,
    b"bearer a b c",
    b"Bearer \x7f",
]


async def test_bad_credentials_are_a_401_or_the_login_form_never_a_500(
    client: httpx.AsyncClient, world: World
) -> None:
    """Broken Authorization headers on the API and broken session cookies on the console."""
    bad: list[str] = []
    for path in ("/api/auth/me", "/api/smtp-monitors", "/api/v3/monitors", "/metrics/monitors"):
        for value in BAD_CREDENTIALS:
            r = await client.get(path, headers=[(b"authorization", value)])
            if r.status_code not in (400, 401):
                bad.append(f"{path} {value[:20]!r}: {r.status_code} {r.text[:100]}")
    for path in ("/console", "/console/monitors.part"):
        for value in (b"mp_session=\xff\xfe", b"mp_session=" + b"x" * 16_000, b"mp_session"):
            r = await client.get(path, headers=[(b"cookie", value)])
            if r.status_code not in (303, 401):
                bad.append(f"{path} {value[:20]!r}: {r.status_code} {r.text[:100]}")
    assert bad == [], "\n".join(bad)


HOSTILE_FILES = [
    "%00",
    "x%00.css",
    "a" * 5000,
    "console.css/x",
    "swagger-ui.css/x",
    "..%2F..%2F__init__.py",
    "%2e%2e/%2e%2e/__init__.py",
    "%FF%FE",
    "/etc/passwd",
]


async def test_hostile_file_names_under_static_routes_are_a_404(
    client: httpx.AsyncClient, world: World
) -> None:
    """The routes serving files (read from the table: a `:path` parameter) with names that
    are no file of theirs, asked by nobody logged in: a 404, never a 500 nor a file."""
    served = [k for k in ROUTES if k.startswith("GET ") and ":path}" in k]
    assert len(served) >= 2, served
    bad = []
    for key in served:
        for name in HOSTILE_FILES:
            url = _PARAM.sub(name, key.split(" ", 1)[1])
            r = await client.get(url)
            if r.status_code != 404:
                bad.append(f"{url[:80]}: {r.status_code} {r.text[:100]!r}")
    assert bad == [], "\n".join(bad)


CONSOLE_QUERY = ["search", "status", "page", "perPage", "days", "country", "from", "to", "range"]
CONSOLE_QUERY += ["saved", "error", "notice", "token", "customer", "kind", "tab", "next", "email"]


async def test_console_pages_with_hostile_queries_never_answer_500_nor_echo_markup(
    client: httpx.AsyncClient, world: World
) -> None:
    """Every page under /console and /status (read from the table) with the query names the
    pages use given markup, huge, negative and undecodable values: no 500, no markup echoed."""
    bad = []
    for key, route in ROUTES.items():
        method, path = key.split(" ", 1)
        if method != "GET" or not path.startswith(("/console", "/status")) or ":path}" in path:
            continue
        for value in ("%3Cscript%3Ealert(1)%3C%2Fscript%3E", "-1", "9" * 40, "%FF%FE", "z" * 3000):
            query = "?" + "&".join(f"{name}={value}" for name in CONSOLE_QUERY)
            hostile = Route(route.who, route.ok, params=route.params, query=query)
            r = await call(client, world, key, hostile, "owner")
            if r.status_code >= 500 and r.status_code != route.ok:
                bad.append(f"{key} {value[:12]}: {r.status_code} {r.text[:200]}")
            if "<script>alert(1)</script>" in r.text:
                bad.append(f"{key}: the query's markup is in the page unescaped")
    assert bad == [], "\n".join(bad)


async def test_every_method_on_every_path_is_answered_without_a_500(
    client: httpx.AsyncClient, world: World
) -> None:
    """HEAD and OPTIONS, with and without a token: no 500. Every other method a path does not
    serve: a 405, never a 500. Litestar's router raises that 405 as it looks the method up,
    before the route's middleware, where a token is first read: the answer is one with any
    token or none, so it is asked once, without one. An answer other than 405 went past the
    router: it fails."""
    paths: dict[str, Route] = {}
    for key, route in ROUTES.items():
        paths.setdefault(key.split(" ", 1)[1], route)
    bad = []
    for path, route in paths.items():
        if ":path}" in path or "logout" in path:
            continue
        for method in ("HEAD", "OPTIONS", "GET", "POST", "PUT", "PATCH", "DELETE", "TRACE"):
            if f"{method} {path}" in ROUTES:
                continue  # what it serves: the access matrix's
            # HEAD runs the path's GET handler and OPTIONS Litestar's own: past the router
            routed = method in ("HEAD", "OPTIONS")
            for caller in ("anonymous", "readonly") if routed else ("anonymous",):
                probe = Route(route.who, route.ok, params=route.params, query=route.query)
                r = await call(client, world, f"{method} {path}", probe, caller)
                if r.status_code >= 500 or (not routed and r.status_code != 405):
                    bad.append(f"{method} {path} as {caller}: {r.status_code} {r.text[:100]}")
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize(
    "monitor", ["smtpMonitorPublicId", "imapPopMonitorPublicId", "roundtripMonitorPublicId"]
)
async def test_a_nul_or_markup_in_any_field_of_a_filled_edit_form_is_no_500(
    client: httpx.AsyncClient, world: World, monitor: str
) -> None:
    """The console's edit form as the page fills it, one field at a time given a NUL, then
    markup: a 4xx (or the saved redirect), never a 500, the markup never unescaped."""
    edit = f"/console/monitors/{world.ids[monitor]}/edit"
    page = await client.get(edit, headers=world.cookies("owner"))
    assert page.status_code == 200
    shown = form_values(page.text)
    assert len(shown) > 10, shown
    bad = []
    for field in shown:
        for value in ("\x00", "<script>alert(1)</script>"):
            form = {**shown, field: shown[field] + value, "_csrf_token": world.csrf["owner"][1]}
            r = await client.post(edit, data=form, headers=world.cookies("owner"))
            if r.status_code >= 500:
                bad.append(f"{field} {value!r}: {r.status_code} {r.text[:200]}")
            if "<script>alert(1)</script>" in r.text:
                bad.append(f"{field}: markup unescaped")
    assert bad == [], "\n".join(bad)
