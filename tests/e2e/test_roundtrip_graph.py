"""A round trip over Microsoft Graph end to end (issue 82): made through the API with an app's
client credentials, its tokens fetched by the controller from the Graph peer's token endpoint,
the job sealed to its country over NATS, a real agent sending with `sendMail` and finding the
message on page 3 of a busy inbox (testkit/peers/graph.py, HTTPS on loopback), the result back
through the API. Throttling is `inconclusive` and opens no incident; a revoked token is `auth`."""

import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import trustme

from agent.probers.graph import PAGE_SIZE
from controller.jobs.rules import JobIds
from testkit.alerting.wired import wired_alerter
from testkit.peers.graph import GRAPH_SCOPE, GraphPeer, serve_graph
from tests.conftest import Tenant
from tests.e2e.conftest import HOME, Agents, Controller
from tests.e2e.helpers import wait_results
from tests.e2e.test_roundtrip_pipeline import RT, until_confirmed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SENDER, PROBE = "sender@contoso.test", "probe@contoso.test"
OTHER_MONITOR = "5d0c3c1e-1a7b-4f4e-8a55-9e4f3b2d1c00"


@pytest.fixture
async def graph(e2e_ca: trustme.CA) -> AsyncIterator[GraphPeer]:
    async with serve_graph(GraphPeer({SENDER, PROBE}), e2e_ca) as peer:
        yield peer


def grant(peer: GraphPeer) -> dict[str, Any]:
    """The app's client credentials at the peer's token endpoint (a tenant's, on loopback)."""
    return {
        "grant": "client_credentials",
        "tokenUrl": f"{peer.url}/contoso.test/oauth2/v2.0/token",
        "clientId": peer.client_id,
        "clientSecret": peer.client_secret,
    }


async def graph_monitor(
    api: httpx.AsyncClient, org: Tenant, peer: GraphPeer, ca: trustme.CA
) -> str:
    tls = {"ca": ca.cert_pem.bytes().decode()}
    body = {
        "customerId": org.customer_public_id,
        "name": "Mail over Graph",
        "checkInterval": 3600,
        "timeoutSeconds": 15,
        "allowedCheckCountryCodes": [HOME],
        "roundtripConfig": {
            "send": {
                "api": "graph",
                "hostname": "127.0.0.1",
                "port": peer.port,
                "tlsOptions": tls,
                "auth": {"user": SENDER, "oauth2": grant(peer)},
                "from": SENDER,
            },
            "to": PROBE,
            "receive": {
                "api": "graph",
                "hostname": "127.0.0.1",
                "port": peer.port,
                "tlsOptions": tls,
                "user": PROBE,
                "oauth2": grant(peer),
                "folders": ["inbox"],
                "cleanup": "move",
            },
        },
    }
    r = await api.post(RT, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    shown = r.json()["roundtripConfig"]
    assert shown["receive"]["oauth2"]["scopes"] == [GRAPH_SCOPE]
    public_id: str = r.json()["publicId"]
    return public_id


def others_probe(n: int) -> bytes:
    """A newer probe message of another monitor: the listing's first pages are full of them."""
    msg = EmailMessage()
    msg["From"], msg["To"] = SENDER, PROBE
    msg["Subject"] = f"mailprobe round trip other{n:04d}"
    msg["X-Mailprobe-Probe"] = f"{OTHER_MONITOR} DE {int(time.time() * 1000)} other{n:04d}"
    msg.set_content("probe")
    return msg.as_bytes()


async def a_round(
    api: httpx.AsyncClient, org: Tenant, public_id: str, within: float = 20.0
) -> dict[str, Any]:
    """Trigger a round (one country); its result once it is in."""
    r = await api.post(f"{RT}/{public_id}/trigger-check", headers=org.auth())
    assert r.status_code == 202, r.text
    [job] = r.json()["jobs"]
    assert job["status"] == "queued", r.text
    items = await wait_results(
        api,
        org,
        public_id,
        lambda items: any(i["jobId"] == job["jobId"] for i in items),
        within=within,
        path=RT,
    )
    found: dict[str, Any] = next(i for i in items if i["jobId"] == job["jobId"])
    return found


async def test_a_graph_round_trip_made_through_the_api_runs_on_a_real_agent(
    api: httpx.AsyncClient,
    org: Tenant,
    controller: Controller,
    agents: Agents,
    job_ids: JobIds,
    graph: GraphPeer,
    e2e_ca: trustme.CA,
) -> None:
    later = time.time() + 600
    for n in range(2 * PAGE_SIZE + 5):
        graph.deliver(PROBE, others_probe(n), received=later)
    public_id = await graph_monitor(api, org, graph, e2e_ca)

    first = await wait_results(api, org, public_id, lambda items: bool(items), within=20, path=RT)
    [item] = first
    assert (item["status"], item["errorKind"], item["country"]) == ("up", None, HOME), item
    assert item["folder"] == "inbox" and item["phases"]["deliveryMs"] is not None
    assert item["authResults"]["spf"] == "pass"
    # The ARC set Exchange stamped, as the results API shows it.
    assert item["arc"] == {
        "instances": 1,
        "cv": "none",
        "authenticationResults": f"i=1; {graph.auth_results}",
    }, item
    assert graph.sent == 1
    pages = [c for c in graph.calls if c.startswith("GET ") and "/mailFolders/inbox/" in c]
    assert len(pages) >= 3 and "skip=" in pages[2], "the probe was found on page 3"
    assert len(graph.folder(PROBE, "deleteditems")) == 1
    assert len(graph.folder(PROBE, "inbox")) == 2 * PAGE_SIZE + 5  # others' untouched
    # The client secret went to the token endpoint only; the job and the result carry neither.
    assert all(graph.client_secret not in c for c in graph.calls)
    await until_confirmed(api, org, controller, job_ids, public_id)

    # Throttled: no verdict, no incident.
    graph.throttle = True
    throttled = await a_round(api, org, public_id)
    assert (throttled["status"], throttled["errorKind"]) == ("inconclusive", "inconclusive")
    assert "Retry-After 30" in throttled["message"]
    alerter = wired_alerter(controller.pool, controller.js, job_ids)
    await alerter.burst()
    async with controller.pool.acquire() as conn:
        incidents = await conn.fetchval(
            "SELECT count(*) FROM incidents i JOIN monitors m ON m.id = i.monitor_id"
            " WHERE m.public_id = $1",
            public_id,
        )
    assert incidents == 0
    graph.throttle = False

    # The app's token revoked: the same `auth` a refused IMAP login is.
    graph.expired = True
    revoked = await a_round(api, org, public_id)
    assert (revoked["status"], revoked["errorKind"]) == ("down", "auth"), revoked
    assert "InvalidAuthenticationToken" in revoked["message"]
