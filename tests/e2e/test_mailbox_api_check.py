"""An IMAP/POP3 monitor watching a mailbox over Microsoft Graph and over the Gmail API, end to
end (issue 82): made through the API with an OAuth2 grant and no IMAP host, its tokens fetched
by the controller from the peer's token endpoint, the job sealed to its country over NATS, a
real agent reading the inbox on the peer (testkit/peers, HTTPS on loopback), the result back
through the results API. Throttled is `inconclusive` and opens no incident; a revoked token is
`auth`; a peer slower than the monitor's timeout is `timeout`."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trustme

from controller.jobs.rules import JobIds
from testkit.alerting.wired import wired_alerter
from testkit.peers.gmail import GmailPeer, serve_gmail
from testkit.peers.graph import GRAPH_SCOPE, GraphPeer, serve_graph
from tests.api.helpers import IMAP
from tests.conftest import Tenant
from tests.e2e.conftest import HOME, Agents, Controller
from tests.e2e.helpers import wait_results

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

BOX = "probe@contoso.test"


@pytest.fixture
async def graph(e2e_ca: trustme.CA) -> AsyncIterator[GraphPeer]:
    async with serve_graph(GraphPeer({BOX}), e2e_ca) as peer:
        yield peer


@pytest.fixture
async def gmail(e2e_ca: trustme.CA) -> AsyncIterator[GmailPeer]:
    async with serve_gmail(GmailPeer({BOX}), e2e_ca) as peer:
        yield peer


async def a_monitor(
    api: httpx.AsyncClient, org: Tenant, port: int, imap: dict[str, Any], ca: trustme.CA
) -> str:
    body = {
        "customerId": org.customer_public_id,
        "name": f"Inbox over {imap['api']}",
        "hostname": "127.0.0.1",
        "port": port,
        "checkInterval": 3600,
        "timeoutSeconds": 3,
        "allowedCheckCountryCodes": [HOME],
        "imapPopConfig": {
            "user": BOX,
            "tlsOptions": {"ca": ca.cert_pem.bytes().decode()},
            **imap,
        },
    }
    r = await api.post(IMAP, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    public_id: str = r.json()["publicId"]
    return public_id


async def a_round(api: httpx.AsyncClient, org: Tenant, public_id: str) -> dict[str, Any]:
    """Trigger a check (one country); its result once it is in."""
    r = await api.post(f"{IMAP}/{public_id}/trigger-check", headers=org.auth())
    assert r.status_code == 202, r.text
    [job] = r.json()["jobs"]
    assert job["status"] == "queued", r.text
    items = await wait_results(
        api,
        org,
        public_id,
        lambda items: any(i["jobId"] == job["jobId"] for i in items),
        within=20,
        path=IMAP,
    )
    found: dict[str, Any] = next(i for i in items if i["jobId"] == job["jobId"])
    return found


async def incidents_of(controller: Controller, public_id: str) -> int:
    async with controller.pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM incidents i JOIN monitors m ON m.id = i.monitor_id"
            " WHERE m.public_id = $1",
            public_id,
        )
    return count


async def test_a_mailbox_check_over_graph_runs_on_a_real_agent(
    api: httpx.AsyncClient,
    org: Tenant,
    controller: Controller,
    agents: Agents,
    job_ids: JobIds,
    graph: GraphPeer,
    e2e_ca: trustme.CA,
) -> None:
    grant = {
        "grant": "client_credentials",
        "tokenUrl": f"{graph.url}/contoso.test/oauth2/v2.0/token",
        "clientId": graph.client_id,
        "clientSecret": graph.client_secret,
    }
    public_id = await a_monitor(api, org, graph.port, {"api": "graph", "oauth2": grant}, e2e_ca)
    shown = (await api.get(f"{IMAP}/{public_id}", headers=org.auth())).json()
    assert shown["imapPopConfig"]["oauth2"]["scopes"] == [GRAPH_SCOPE]

    first = await wait_results(api, org, public_id, bool, within=20, path=IMAP)
    [item] = first
    assert (item["status"], item["errorKind"], item["country"]) == ("up", None, HOME), item
    assert item["phases"]["authMs"] is not None and item["phases"]["fetchMs"] is not None
    assert any(c.startswith(f"GET /v1.0/users/{BOX}/mailFolders/inbox") for c in graph.calls)
    assert all(graph.client_secret not in c for c in graph.calls)

    # Throttled: no verdict, no incident.
    graph.throttle = True
    throttled = await a_round(api, org, public_id)
    assert (throttled["status"], throttled["errorKind"]) == ("inconclusive", "inconclusive")
    assert "Retry-After 30" in throttled["message"]
    await wired_alerter(controller.pool, controller.js, job_ids).burst()
    assert await incidents_of(controller, public_id) == 0
    graph.throttle = False

    # The app's token revoked: the same `auth` a refused IMAP login is.
    graph.expired = True
    revoked = await a_round(api, org, public_id)
    assert (revoked["status"], revoked["errorKind"]) == ("down", "auth"), revoked
    assert "InvalidAuthenticationToken" in revoked["message"]
    graph.expired = False

    # Slower than the monitor's 3 s: a timeout.
    graph.slow_s = 5.0
    slow = await a_round(api, org, public_id)
    assert (slow["status"], slow["errorKind"]) == ("down", "timeout"), slow


async def test_a_mailbox_check_over_gmail_runs_on_a_real_agent(
    api: httpx.AsyncClient,
    org: Tenant,
    controller: Controller,
    agents: Agents,
    gmail: GmailPeer,
    e2e_ca: trustme.CA,
) -> None:
    grant = {
        "grant": "refresh_token",
        "tokenUrl": f"{gmail.url}/token",
        "clientId": gmail.client_id,
        "clientSecret": gmail.client_secret,
        "refreshToken": gmail.refresh_token,
    }
    public_id = await a_monitor(api, org, gmail.port, {"api": "gmail", "oauth2": grant}, e2e_ca)
    [item] = await wait_results(api, org, public_id, bool, within=20, path=IMAP)
    assert (item["status"], item["errorKind"]) == ("up", None), item
    assert any(c.startswith(f"GET /gmail/v1/users/{BOX}/profile") for c in gmail.calls)
    gmail.throttle = True
    throttled = await a_round(api, org, public_id)
    assert (throttled["status"], throttled["errorKind"]) == ("inconclusive", "inconclusive")
    gmail.throttle, gmail.expired = False, True
    revoked = await a_round(api, org, public_id)
    assert (revoked["status"], revoked["errorKind"]) == ("down", "auth"), revoked
