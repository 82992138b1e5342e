"""A round trip's first minutes (issue 66), end to end on real servers: Debian's Postfix takes
the message for submission (SASL through Dovecot, STARTTLS) and delivers it into the Maildir
Debian's Dovecot serves over IMAP and POP3; the controller's scheduler and ingester and two
countries' agents, on a skipping clock (tests/e2e/virtual.py: a round's spaced login is clock
time, skipped; Postfix and Dovecot run in real time). No alerter runs, so no round is judged: the
mailbox's delivery record stays as it was made (unconfirmed) unless the results themselves count.

- "Check now" right after creating one joins its first round, still in flight: no second
  round, which would be a look (the unconfirmed mailbox's cap) finding nothing while the first
  round's message is on its way.
- A round after a delivered one sends (the mailbox showed it receives), instead of a look that
  finds nothing because the delivered round deleted its message.
- Two monitors reading one mailbox, one over IMAP and one over POP3, checked at once, each find
  their own messages from their first round and leave each other's alone.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from testkit.oauth2 import dovecot, postfix
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from tests.conftest import Tenant
from tests.e2e.helpers import no_round_due
from tests.e2e.virtual import FIRST, SECOND, Virtual, stepped_results

pytestmark = pytest.mark.usefixtures("unjudged")

RT = "/api/roundtrip-monitors"
BOX = "alice@example.com"
PASSWORD = "first-minutes-4711"


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[tuple[Dovecot, Postfix, str]]:
    for why in (dovecot.missing(), postfix.missing()):
        if why is not None:
            pytest.skip(why)
    ca = trustme.CA()
    async with (
        Dovecot(ca, passwords={BOX: PASSWORD}) as dc,
        Postfix(ca, dc.auth_socket, dc.homes, dc.owner) as pf,
    ):
        yield dc, pf, ca.cert_pem.bytes().decode()


async def roundtrip(
    api: httpx.AsyncClient, org: Tenant, servers: tuple[Dovecot, Postfix, str], protocol: str
) -> str:
    dc, pf, ca = servers
    tls = {"ca": ca, "servername": "localhost"}
    body = {
        "customerId": org.customer_public_id,
        "name": f"first minutes {protocol}",
        "checkInterval": 3600,
        "timeoutSeconds": 15,
        "allowedCheckCountryCodes": [FIRST, SECOND],
        "roundtripConfig": {
            "send": {
                "hostname": "127.0.0.1",
                "port": pf.ports["smtp"],
                "auth": {"user": BOX, "pass": PASSWORD},
                "tlsOptions": tls,
                "from": BOX,
            },
            "to": BOX,
            "receive": {
                "protocol": protocol,
                "hostname": "127.0.0.1",
                "port": dc.ports[f"{protocol}s"],
                "tls": True,
                "tlsOptions": tls,
                "user": BOX,
                "password": PASSWORD,
            },
        },
    }
    r = await api.post(RT, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    public_id: str = r.json()["publicId"]
    return public_id


async def check_now(api: httpx.AsyncClient, org: Tenant, public_id: str) -> dict[str, Any]:
    r = await api.post(f"{RT}/{public_id}/trigger-check", headers=org.auth())
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def results_of(
    virtual: Virtual, api: httpx.AsyncClient, org: Tenant, public_id: str, job_ids: set[str]
) -> list[dict[str, Any]]:
    """Every result of the monitor once those of `job_ids` are in (a round's second country
    logs in LOGIN_SPACING_SECONDS after its first)."""
    return await stepped_results(
        virtual, api, org, public_id, lambda items: job_ids <= {i["jobId"] for i in items}, 40.0, RT
    )


async def some_results(
    virtual: Virtual, api: httpx.AsyncClient, org: Tenant, public_id: str, n: int
) -> list[dict[str, Any]]:
    """The monitor's results once there are `n`."""
    return await stepped_results(virtual, api, org, public_id, lambda i: len(i) >= n, 40.0, RT)


def probes_left(dc: Dovecot) -> list[Path]:
    """Probe messages still in the mailbox (Maildir `new` and `cur`)."""
    box = dc.homes / "alice" / "Maildir"
    return [p for sub in ("new", "cur") for p in (box / sub).glob("*") if p.is_file()]


def outcomes(items: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return sorted((i["status"], i["errorKind"], i["message"][:120]) for i in items)


async def test_check_now_right_after_creating_joins_the_first_round(
    virtual_api: httpx.AsyncClient,
    virtual_org: Tenant,
    virtual: Virtual,
    servers: tuple[Dovecot, Postfix, str],
) -> None:
    api, org = virtual_api, virtual_org
    public_id = await roundtrip(api, org, servers, "imap")
    # The first round has gone (its first country is in, its second logs in later).
    await some_results(virtual, api, org, public_id, 1)
    triggered = await check_now(api, org, public_id)
    asked = {j["jobId"] for j in triggered["jobs"]}
    items = await results_of(virtual, api, org, public_id, asked)
    assert outcomes(items) == [("up", None, i["message"][:120]) for i in items], items
    assert len(items) == 2, "one round, both countries: the check-now joined it"
    assert triggered["joined"] is True, triggered
    assert {i["scheduledAt"] for i in items} == {triggered["scheduledAt"]}
    assert probes_left(servers[0]) == []


async def test_a_round_after_a_delivered_one_sends_instead_of_looking(
    virtual_api: httpx.AsyncClient,
    virtual_org: Tenant,
    virtual: Virtual,
    servers: tuple[Dovecot, Postfix, str],
) -> None:
    api, org = virtual_api, virtual_org
    public_id = await roundtrip(api, org, servers, "imap")
    first = await some_results(virtual, api, org, public_id, 2)
    assert [i["status"] for i in first] == ["up", "up"], first
    r = await api.get(f"{RT}/{public_id}/delivery", headers=org.auth())
    assert r.json()["state"] == "confirmed", "by its results, before any alerter judged it"
    await no_round_due(virtual.pool, public_id)  # no scheduled round for it to join
    # The first round is over (both countries in): this is a round of its own.
    triggered = await check_now(api, org, public_id)
    asked = {j["jobId"] for j in triggered["jobs"]}
    items = [
        i for i in await results_of(virtual, api, org, public_id, asked) if i["jobId"] in asked
    ]
    assert outcomes(items) == [("up", None, i["message"][:120]) for i in items], items
    assert all("sent nothing" not in i["message"] for i in items), items
    assert probes_left(servers[0]) == []
    assert triggered["joined"] is False, triggered


async def test_two_monitors_reading_one_mailbox_each_work_from_their_first_round(
    virtual_api: httpx.AsyncClient,
    virtual_org: Tenant,
    virtual: Virtual,
    servers: tuple[Dovecot, Postfix, str],
) -> None:
    api, org = virtual_api, virtual_org
    imap_id = await roundtrip(api, org, servers, "imap")
    pop3_id = await roundtrip(api, org, servers, "pop3")
    # Both first rounds have gone, as when a person creates them and then checks them.
    await asyncio.gather(*(some_results(virtual, api, org, m, 1) for m in (imap_id, pop3_id)))
    by_imap, by_pop3 = await asyncio.gather(
        check_now(api, org, imap_id), check_now(api, org, pop3_id)
    )
    imap_items, pop3_items = await asyncio.gather(
        results_of(virtual, api, org, imap_id, {j["jobId"] for j in by_imap["jobs"]}),
        results_of(virtual, api, org, pop3_id, {j["jobId"] for j in by_pop3["jobs"]}),
    )
    for items in (imap_items, pop3_items):
        assert outcomes(items) == [("up", None, i["message"][:120]) for i in items], items
        assert len(items) == 2, items
    assert by_imap["joined"] is True and by_pop3["joined"] is True
    assert probes_left(servers[0]) == []
