"""A round-trip job on the wire (issue 14): both legs' secrets, the mailbox and the addresses
travel sealed to the job's country; that country's key opens both legs."""

import json
import uuid

import asyncpg
import httpx
from structlog.testing import capture_logs

from shared.messages import RoundTripCheckJob
from testkit.sealing import KeyRing
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_scheduler import make_due
from tests.pipeline.test_sealing import raw_jobs


async def test_a_round_trip_job_holds_no_secret_address_or_mailbox_in_clear(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    seal_keys: KeyRing,
) -> None:
    (cc,) = countries.take()
    await countries.live(cc)
    tag = uuid.uuid4().hex
    send_pw, box_pw, box_host = f"send-{tag}", f"box-{tag}", f"imap-{tag}.example.net"
    body = {
        "customerId": org.customer_public_id,
        "name": "round trip",
        "allowedCheckCountryCodes": [cc],
        "roundtripConfig": {
            "send": {
                "hostname": "smtp.example.com",
                "auth": {"user": f"sender-{tag}@example.com", "pass": send_pw},
            },
            "to": f"rcpt-{tag}@example.net",
            "receive": {"hostname": box_host, "user": f"box-{tag}", "password": box_pw},
        },
    }
    r = await api.post("/api/roundtrip-monitors", json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    await make_due(pipe_pool, r.json()["publicId"])
    with capture_logs() as logs:
        assert await pipeline.scheduler.tick() == 1
    [raw] = await raw_jobs(pipeline.js, cc)
    assert tag.encode() not in raw, "no password, user, address or mailbox host in clear"
    assert json.loads(raw)["sealKeyId"] == seal_keys.key_id(cc)
    [(job, _)] = await countries.jobs(cc)
    opened = seal_keys.opened(job)
    assert isinstance(opened, RoundTripCheckJob)
    assert (opened.hostname, opened.port) == ("smtp.example.com", 25)
    assert (
        opened.config.send.auth is not None and opened.config.send.auth.password.reveal() == send_pw
    )
    assert (opened.config.receive.hostname, opened.config.receive.password.reveal()) == (
        box_host,
        box_pw,
    )
    assert opened.config.to == f"rcpt-{tag}@example.net"
    assert tag not in repr(logs)
