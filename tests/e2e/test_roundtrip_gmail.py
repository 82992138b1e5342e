"""A round trip over the Gmail API end to end (issue 82): made through the API with a user's
refresh token or a service account's JWT bearer grant (each leg as its own mailbox), its
access tokens fetched by the controller from the Gmail peer's token endpoint,
the job sealed to its country over NATS, a real agent sending with `messages.send` and finding
the message by its token (testkit/peers/gmail.py, HTTPS on loopback), the result back through
the API; the mailbox's quota spent is `inconclusive`."""

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trustme
from joserfc.jwk import RSAKey

from controller.jobs.rules import JobIds
from testkit.peers.gmail import GmailPeer, serve_gmail
from tests.conftest import Tenant
from tests.e2e.conftest import HOME, Agents, Controller
from tests.e2e.helpers import wait_results
from tests.e2e.test_roundtrip_graph import a_round
from tests.e2e.test_roundtrip_pipeline import RT, until_confirmed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SENDER, PROBE = "sender@example.test", "probe@example.test"
GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.modify"


@pytest.fixture
async def gmail(e2e_ca: trustme.CA) -> AsyncIterator[GmailPeer]:
    async with serve_gmail(GmailPeer({SENDER, PROBE}), e2e_ca) as peer:
        yield peer


SERVICE_ACCOUNT = "probe@project.iam.gserviceaccount.com"
SERVICE_KEY = RSAKey.generate_key(2048)


def grant(peer: GmailPeer, login: str = "refresh_token") -> dict[str, Any]:
    """A user's refresh token, or a service account acting as the leg's mailbox, at the peer's
    token endpoint (Google's, on loopback)."""
    if login == "jwt_bearer":
        peer.service_accounts[SERVICE_ACCOUNT] = RSAKey.import_key(
            SERVICE_KEY.as_pem(private=False)
        )
        return {
            "grant": "jwt_bearer",
            "tokenUrl": f"{peer.url}/token",
            "clientId": SERVICE_ACCOUNT,
            "privateKey": SERVICE_KEY.as_pem(private=True).decode(),
        }
    return {
        "grant": "refresh_token",
        "tokenUrl": f"{peer.url}/token",
        "clientId": peer.client_id,
        "clientSecret": peer.client_secret,
        "refreshToken": peer.refresh_token,
    }


@pytest.mark.parametrize("login", ["refresh_token", "jwt_bearer"])
async def test_a_gmail_round_trip_made_through_the_api_runs_on_a_real_agent(
    login: str,
    api: httpx.AsyncClient,
    org: Tenant,
    controller: Controller,
    agents: Agents,
    job_ids: JobIds,
    gmail: GmailPeer,
    e2e_ca: trustme.CA,
) -> None:
    tls = {"ca": e2e_ca.cert_pem.bytes().decode()}
    leg = {"api": "gmail", "hostname": "127.0.0.1", "port": gmail.port, "tlsOptions": tls}
    body = {
        "customerId": org.customer_public_id,
        "name": "Mail over Gmail",
        "checkInterval": 3600,
        "timeoutSeconds": 15,
        "allowedCheckCountryCodes": [HOME],
        "roundtripConfig": {
            "send": {
                **leg,
                "auth": {"user": SENDER, "oauth2": grant(gmail, login)},
                "from": SENDER,
            },
            "to": PROBE,
            "receive": {**leg, "user": PROBE, "oauth2": grant(gmail, login)},
        },
    }
    r = await api.post(RT, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    assert r.json()["roundtripConfig"]["receive"]["oauth2"]["scopes"] == [GMAIL_SCOPE]
    public_id = r.json()["publicId"]

    [item] = await wait_results(api, org, public_id, bool, within=20, path=RT)
    assert (item["status"], item["errorKind"], item["country"]) == ("up", None, HOME), item
    assert item["folder"] == "INBOX" and item["phases"]["deliveryMs"] is not None
    assert gmail.sent == 1 and [m.labels for m in gmail.mailbox(PROBE)] == [["TRASH"]]
    assert all(gmail.refresh_token not in c for c in gmail.calls)
    await until_confirmed(api, org, controller, job_ids, public_id)

    # The mailbox's quota spent: no verdict.
    gmail.units[PROBE] = [(time.monotonic(), gmail.units_per_minute)]
    spent = await a_round(api, org, public_id)
    assert (spent["status"], spent["errorKind"]) == ("inconclusive", "inconclusive"), spent
    assert "userRateLimitExceeded" in spent["message"]
