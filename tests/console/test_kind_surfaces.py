"""Every kind of the registry (controller/monitors/kinds.py) on every surface, over real HTTP: its
API
routes in OpenAPI, its console page, create and edit forms, apply/export, posture and login
back-off endpoints, and the per-monitor metrics' `kind` label. A kind added to the registry
without one of its surfaces fails here (round trips lacked the console page and forms,
apply/export, posture and login back-off)."""

import copy
import re
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.ascode.run import apply, current, export_text
from controller.ascode.spec import load
from controller.monitors import kinds
from controller.monitors.kinds import KINDS, Kind
from controller.web.api.monitor_kinds import APIS, api_of
from controller.web.api.monitor_schemas import MASK
from controller.web.console.form_fields import values_of
from controller.web.console.forms import form_of
from testkit.serving import http_client
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish, form_values
from tests.console.test_monitor_metrics import scrape_token

TYPES = [(kind, t) for kind in KINDS for t in kind.types]
IDS = [t for _, t in TYPES]


def create_body(kind: Kind, monitor_type: str, tenant: Tenant) -> dict[str, Any]:
    """The kind's documented create example, as `monitor_type`, for the tenant's customer."""
    body: dict[str, Any] = copy.deepcopy(
        cast(dict[str, Any], api_of(kind).create_examples[0].value)
    )
    body["customerId"] = tenant.customer_public_id
    body["name"] = f"{monitor_type} surfaces"
    if len(kind.types) > 1:
        body[kind.config_key]["protocol"] = monitor_type
    return body


async def make(http: httpx.AsyncClient, tenant: Tenant, kind: Kind, t: str) -> dict[str, Any]:
    r = await http.post(api_of(kind).path, json=create_body(kind, t, tenant), headers=tenant.auth())
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


@pytest.fixture
async def api_client(api_url: str, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as c:
        yield c


def test_every_kind_has_an_api_and_a_form_and_every_type_a_kind() -> None:
    """The registry is complete: each kind has its HTTP resource and console form, and the
    stored types are exactly the wire's."""
    assert [api.kind for api in APIS] == list(KINDS)
    assert {t for _, t in TYPES} == set(kinds.ALL_TYPES) == {"smtp", "imap", "pop3", "roundtrip"}
    for kind, t in TYPES:
        assert kinds.of_type(t) is kind and form_of(t) is not None
        assert kinds.named(kind.name) is kind and api_of(kind).path == f"/api/{kind.name}-monitors"


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
async def test_the_kinds_routes_are_in_openapi_and_posture_and_login_backoff_answer(
    kind: Kind, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Each kind serves its list, item, incidents, alert settings, login back-off and posture
    (round trips had no `/login-backoff` and no `/posture`)."""
    api = api_of(kind)
    paths = (await http.get("/schema/openapi.json")).json()["paths"]
    item = f"{api.path}/{{{api.param}}}"
    assert {"get", "post"} <= set(paths[api.path])
    assert {"get", "patch", "delete"} <= set(paths[item])
    for sub in ("login-backoff", "posture", "incidents", "alert-settings", "results"):
        assert "get" in paths[f"{item}/{sub}"], sub
    monitor = await make(http, tenant, kind, kind.types[0])
    url = f"{api.path}/{monitor['publicId']}"
    r = await http.get(f"{url}/login-backoff", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    assert r.json()["backedOff"] is False
    r = await http.get(f"{url}/posture", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    assert r.json()["monitorId"] == monitor["publicId"]


@pytest.mark.parametrize(("kind", "monitor_type"), TYPES, ids=IDS)
async def test_the_console_shows_creates_and_edits_a_monitor_of_each_type(
    kind: Kind,
    monitor_type: str,
    client: Browserish,
    http: httpx.AsyncClient,
    tenant: Tenant,
) -> None:
    """The monitor's console page answers (a round trip's was a 404), its create form renders
    and creates, and its edit form saves the monitor unchanged with every password left empty
    (write-only: kept as stored)."""
    api = api_of(kind)
    monitor = await make(http, tenant, kind, monitor_type)
    client.session = tenant.tokens["member"]
    page = f"/console/monitors/{monitor['publicId']}"
    r = await client.get(page)
    assert r.status_code == 200 and monitor["name"] in r.text
    new = await client.get(f"/console/new/{monitor_type}")
    assert new.status_code == 200 and 'id="new-monitor"' in new.text
    edit = await client.get(f"{page}/edit")
    assert edit.status_code == 200 and "password" in edit.text and "********" not in edit.text

    shown = monitor[kind.config_key]
    values = {**form_values(edit.text), "name": f"{monitor_type} by form"}
    token = await client.csrf(f"{page}/edit")
    r = await client.post(f"{page}/edit", values, token=token)
    assert (r.status_code, r.headers.get("location")) == (303, f"{page}?notice=updated"), r.text
    after = (await http.get(f"{api.path}/{monitor['publicId']}", headers=tenant.auth())).json()
    assert after["name"] == f"{monitor_type} by form"
    form = form_of(monitor_type)
    # secrets kept (the mask), nothing the form shows changed
    assert values_of(form, after) == {**values_of(form, monitor), "name": after["name"]}
    assert str(after[kind.config_key]).count(MASK) == str(shown).count(MASK)

    on_form = set(re.findall(r'name="([\w.~]+)"', new.text))
    assert {f.name for f in form.fields if f.widget != "fixed"} <= on_form
    secrets = {f.name: "Form-Secret-1" for f in form.fields if f.secret}
    typed = {k: v for k, v in values.items() if k in on_form and not k.endswith("~clear")}
    typed = {k: v for k, v in typed.items() if "oauth2" not in k}  # a password login
    r = await client.post(f"/console/new/{monitor_type}", {**typed, **secrets}, token=token)
    assert r.status_code == 303, r.text[:2000]
    created = r.headers["location"].split("/")[-1].split("?")[0]
    got = (await http.get(f"{api.path}/{created}", headers=tenant.auth())).json()
    assert values_of(form, got) == {**values_of(form, monitor), "name": values["name"]}
    assert MASK in str(got[kind.config_key])  # the typed passwords, stored
    assert "Form-Secret-1" not in (await client.get(r.headers["location"])).text


@pytest.mark.parametrize(("kind", "monitor_type"), TYPES, ids=IDS)
async def test_export_then_apply_round_trips_a_monitor_of_each_type(
    kind: Kind,
    monitor_type: str,
    http: httpx.AsyncClient,
    tenant: Tenant,
    api_client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    api_url: str,
) -> None:
    """`export` writes the monitor (secrets as `{env: NAME}`), `apply` of that file to another
    customer creates the same monitor, and applying it again changes nothing (round trips were
    skipped by both)."""
    await make(http, tenant, kind, monitor_type)
    text = export_text(
        tenant.customer_public_id, await current(api_client, tenant.customer_public_id)
    )
    assert f"type: {monitor_type}" in text and "********" not in text
    env = {name: f"{name.lower()}-value" for name in re.findall(r"env: (\w+)", text)}
    assert len(env) == len(kind.secrets)
    other = await make_tenant(pool)
    moved = text.replace(tenant.customer_public_id, other.customer_public_id)
    spec = load(moved, "exported.yaml", env)
    async with http_client(base_url=api_url, headers=other.auth(), timeout=10) as theirs:
        said: list[str] = []
        assert await apply(spec, theirs, prune=False, dry_run=False, say=said.append) == 0, said
        assert said[0] == f"+ create {monitor_type} '{monitor_type} surfaces'", said
        again: list[str] = []
        assert await apply(spec, theirs, prune=False, dry_run=False, say=again.append) == 0
        assert all(line.startswith("=") for line in again[:-1]), again
        exported = export_text(
            other.customer_public_id, await current(theirs, other.customer_public_id)
        )
    assert exported == moved


@pytest.mark.parametrize(("kind", "monitor_type"), TYPES, ids=IDS)
async def test_the_per_monitor_metrics_label_the_kind(
    kind: Kind,
    monitor_type: str,
    client: Browserish,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
) -> None:
    """`mailprobe_monitor_info` carries each monitor's stored type as its `kind` label."""
    org = await make_tenant(pool)
    monitor = await make(http, org, kind, monitor_type)
    token = await scrape_token(client, org.tokens["admin"])
    r = await http.get("/metrics/monitors", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    labels = [
        s.labels
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == "mailprobe_monitor_info"
    ]
    assert {(x["monitor"], x["kind"]) for x in labels} == {(monitor["publicId"], monitor_type)}


async def test_a_status_page_shows_a_monitor_of_each_type_with_its_kind(
    client: Browserish, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A customer's public status page lists a monitor of every stored type, each with its
    kind's label (controller.monitors.kinds.TYPE_LABELS)."""
    org = await make_tenant(pool)
    made = {t: await make(http, org, kind, t) for kind, t in TYPES}
    client.session = org.tokens["admin"]
    token = await client.csrf("/console/status-pages")
    slug = f"kinds-{org.org_id}"
    form: dict[str, str | list[str]] = {
        "slug": slug,
        "title": "Every kind",
        "monitor": [str(m["id"]) for m in made.values()],
        "_csrf_token": token,
    }
    r = await client.http.post(
        f"/console/status-pages/{org.customer_public_id}", data=form, headers=client.headers()
    )
    assert (r.status_code, r.headers["location"]) == (303, "/console/status-pages?saved=1")
    async with http_client(base_url=str(http.base_url)) as anonymous:
        r = await anonymous.get(f"/status/{slug}")
    assert r.status_code == 200
    cards = r'data-monitor-name="([^"]+)">.*?<p class="facts">([^<·]+?)\s*[·<]'
    shown = dict(re.findall(cards, r.text, re.DOTALL))
    assert shown == {f"{t} surfaces": kinds.TYPE_LABELS[t] for _, t in TYPES}, r.text
