"""A monitor with credentials end to end: made through the API, its job sealed by the running
scheduler to HOME's key, opened in memory by HOME's agent, which logs in to a real IMAP server
over TLS; the result comes back through the API. Anyone reading `mon.jobs.>` on the way sees
no password and no user name, and no log line of the controller or the agents holds them."""

import ssl
import uuid
from typing import Any

import httpx
import pytest
import trustme
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from structlog.testing import capture_logs

from testkit.peers.imap import ImapPeer
from testkit.sealing import KeyRing
from tests.api.helpers import IMAP
from tests.conftest import Tenant
from tests.e2e.conftest import HOME, Agents, Controller
from tests.e2e.helpers import count, wait_results


@pytest.fixture(scope="module")
def server_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


async def test_a_credentialed_monitor_runs_in_its_country_and_nobody_else_reads_its_secret(
    api: httpx.AsyncClient,
    org: Tenant,
    controller: Controller,
    agents: Agents,
    e2e_nc: NATS,
    seal_keys: KeyRing,
    server_tls: ssl.SSLContext,
) -> None:
    user, password = f"box-{uuid.uuid4().hex[:8]}@example.com", f"pw-{uuid.uuid4().hex}"
    seen: list[bytes] = []

    async def on_job(msg: Msg) -> None:
        seen.append(msg.data)

    sub = await e2e_nc.subscribe("mon.jobs.>", cb=on_job)
    await e2e_nc.flush()
    try:
        async with ImapPeer({user: password}, server_tls) as peer:
            body: dict[str, Any] = {
                "customerId": org.customer_public_id,
                "name": "sealed e2e",
                "hostname": "127.0.0.1",
                "port": peer.port,
                "checkInterval": 3600,
                "timeoutSeconds": 5,
                "allowedCheckCountryCodes": [HOME],
                "imapPopConfig": {
                    "protocol": "imap",
                    "user": user,
                    "password": password,
                    "tls": True,
                    # a test CA: the agent's system trust store does not know it
                    "tlsOptions": {"rejectUnauthorized": False},
                },
            }
            with capture_logs() as logs:
                r = await api.post(IMAP, json=body, headers=org.auth())
                assert r.status_code == 201, r.text
                pid = r.json()["publicId"]
                # its first round runs at once
                items = await wait_results(api, org, pid, count(1), path=IMAP)
    finally:
        await sub.unsubscribe()
    [item] = items
    assert (item["country"], item["agentId"]) == (HOME, agents.home.agent_id)
    assert (item["status"], item["errorKind"]) == ("up", None), item["message"]
    assert "LOGIN" in peer.commands
    [raw] = seen
    assert password.encode() not in raw and user.encode() not in raw
    assert f'"sealKeyId":"{seal_keys.key_id(HOME)}"'.encode() in raw
    text = repr(logs)
    assert password not in text and user not in text
