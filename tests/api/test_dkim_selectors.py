"""`dkimSelectors`: the DKIM selectors of a monitor's mail domain its owner lists for the
readiness side check (issue 67). Normalised (lower case, each once), shown only when set,
cleared with null or []; a 400 naming the field (or the entry) for too many or for what is no
selector; readonly users cannot set it; and what is stored reaches the readiness ask the planner
builds, before the common selectors."""

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from controller.monitors import store
from controller.monitors.kinds import ROUNDTRIP, SMTP
from controller.scheduling.plan import side_asks
from controller.sidechecks.frame import Planning
from controller.sidechecks.readiness import COMMON_SELECTORS
from shared.sidechecks.readiness import LISTED_MAX, WIRE
from tests.api.helpers import PATHS, assert_error, minimal_body
from tests.api.test_roundtrip_monitors import RT, body
from tests.conftest import Tenant


async def created(http: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = await http.post(PATHS["smtp"], json=minimal_body(tenant, **body), headers=tenant.auth())
    assert r.status_code == 201, r.text
    found: dict[str, Any] = r.json()
    return found


async def _readiness_ask(pool: asyncpg.Pool, public_id: str, types: tuple[str, ...]) -> Any:
    async with pool.acquire() as conn:
        monitor = await store.get(conn, uuid.UUID(public_id), types, None)
    assert monitor is not None
    planning = Planning(
        monitor=monitor,
        config=monitor.config,
        scheduled_at=datetime.now(UTC),
        trigger=False,
        dns_due=True,
        country="DE",
    )
    side, _ = side_asks(planning)
    return WIRE.ask_of(side)


async def test_listed_selectors_are_normalised_shown_cleared_and_reach_the_ask(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    plain = await created(http, tenant, mailDomain="example.com")
    assert "dkimSelectors" not in plain  # the seeds' shape when none are listed
    assert (await _readiness_ask(pool, plain["publicId"], SMTP.types)).selectors == list(
        COMMON_SELECTORS
    )
    m = await created(
        http,
        tenant,
        mailDomain="example.com",
        dkimSelectors=["Mail2026", "s1", "mail2026", "eu.corp_key-1"],
    )
    assert m["dkimSelectors"] == ["mail2026", "s1", "eu.corp_key-1"]
    url = f"{PATHS['smtp']}/{m['publicId']}"
    assert (await http.get(url, headers=tenant.auth())).json()["dkimSelectors"] == [
        "mail2026",
        "s1",
        "eu.corp_key-1",
    ]
    ask = await _readiness_ask(pool, m["publicId"], SMTP.types)
    assert ask.domain == "example.com"
    rest = [s for s in COMMON_SELECTORS if s != "s1"]
    assert ask.selectors == ["mail2026", "s1", "eu.corp_key-1", *rest]
    r = await http.patch(url, json={"dkimSelectors": []}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert "dkimSelectors" not in r.json()
    r = await http.patch(url, json={"dkimSelectors": ["k2"]}, headers=tenant.auth())
    assert r.json()["dkimSelectors"] == ["k2"]
    r = await http.patch(url, json={"dkimSelectors": None}, headers=tenant.auth())
    assert r.status_code == 200 and "dkimSelectors" not in r.json()


async def test_a_round_trip_lists_selectors_too(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    sent = {**body(tenant), "mailDomain": "example.com", "dkimSelectors": ["mar2026"]}
    r = await http.post(RT, json=sent, headers=tenant.auth())
    assert r.status_code == 201, r.text
    trip = r.json()
    assert trip["dkimSelectors"] == ["mar2026"]
    ask = await _readiness_ask(pool, trip["publicId"], ROUNDTRIP.types)
    assert ask.selectors[0] == "mar2026"


@pytest.mark.parametrize(
    ("listed", "field"),
    [
        ([f"s{n}x" for n in range(LISTED_MAX + 1)], "dkimSelectors"),
        (["ok", "two words"], "dkimSelectors[1]"),
        (["-lead"], "dkimSelectors[0]"),
        (["a..b"], "dkimSelectors[0]"),
        (["sel._domainkey.example.com/"], "dkimSelectors[0]"),
        ([""], "dkimSelectors[0]"),
        (["bücher"], "dkimSelectors[0]"),
        (["a" * 64], "dkimSelectors"),  # over the schema's length: msgspec names the list
        ("google", "dkimSelectors"),  # not a list
        ([7], "dkimSelectors"),
    ],
)
async def test_what_is_no_selector_is_400_naming_the_field(
    http: httpx.AsyncClient, tenant: Tenant, listed: Any, field: str
) -> None:
    r = await http.post(
        PATHS["smtp"], json=minimal_body(tenant, dkimSelectors=listed), headers=tenant.auth()
    )
    assert_error(r, 400)
    assert any(f.startswith(field) for f in r.json()["fields"]), r.json()


async def test_readonly_users_cannot_list_selectors(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    m = await created(http, tenant)
    url = f"{PATHS['smtp']}/{m['publicId']}"
    r = await http.patch(url, json={"dkimSelectors": ["s1"]}, headers=tenant.auth("readonly"))
    assert r.status_code == 403
    shown = (await http.get(url, headers=tenant.auth())).json()
    assert "dkimSelectors" not in shown
