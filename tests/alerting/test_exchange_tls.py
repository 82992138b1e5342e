"""The Exchange Online TLS 1.0/1.1 retirement end to end on real parts (issue 81, MC1293480): the
planner asks an IMAP or POP3 monitor's round for it, a real agent's check runner checks a real
server on loopback that offers only TLS 1.0 or 1.1 (its second look says which), the side check
reads the round's TLS version, the result goes in as the ingester stores it (`side_exchange_tls`),
the alerter judges it, and the finding comes out of the posture API where the server is
Microsoft 365's (its host name, or the Microsoft host its greeting names); a server of TLS 1.2
and later clears it, and one nothing tells as Microsoft's raises nothing."""

import base64
import ssl
import warnings
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest
import trustme

from agent.check_runner import CheckRunner
from agent.probers.tls import SslContexts, build_ssl_contexts
from controller.ingest import store as results
from controller.monitors import store as monitors
from controller.monitors.kinds import IMAP_POP
from controller.scheduling.plan import side_asks
from controller.sidechecks.frame import Planning
from shared.clock import WALL
from shared.messages import MonitorType, encode
from shared.sidechecks.exchange_tls import WIRE
from shared.timefmt import iso_ms, utcnow
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.tls import outdated
from tests.alerting.conftest import Rig
from tests.alerting.test_posture import open_codes

CA = trustme.CA()
EXO = base64.b64encode("AM0PR01CA0001.outlook.office365.com".encode("utf-16-le")).decode()
IMAP_GREETING = f"* OK The Microsoft Exchange IMAP4 service is ready. [{EXO}]"
POP3_GREETING = f"+OK The Microsoft Exchange POP3 service is ready. [{EXO}]\r\n".encode()
CODE = "tls_legacy_exchange"


@pytest.fixture(scope="module")
def contexts() -> SslContexts:
    return build_ssl_contexts(cadata=CA.cert_pem.bytes().decode())


def modern() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CA.issue_cert("localhost").configure_cert(ctx)
    return ctx


def tls11_only() -> ssl.SSLContext:
    ctx = outdated(CA)
    with warnings.catch_warnings():  # TLSVersion.TLSv1_1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


async def posture(api: httpx.AsyncClient, rig: Rig, monitor: asyncpg.Record) -> dict[str, Any]:
    response = await api.get(
        f"/api/imap-pop-monitors/{monitor['public_id']}/posture",
        headers=rig.tenant.auth("readonly"),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def round_(
    rig: Rig, monitor: asyncpg.Record, n: int, port: int, contexts: SslContexts
) -> dict[str, Any]:
    """Round `n` from DE: planned (the side checks' asks of a DNS round), checked by a real
    agent's check runner, stored as the ingester stores it and judged; its side facts."""
    at = rig.at(n)
    async with rig.pool.acquire() as conn:
        m = await monitors.get(conn, monitor["public_id"], IMAP_POP.types, None)
    assert m is not None
    side, _ = side_asks(Planning(m, m.config, at, False, True, "DE"))
    assert WIRE.name in side, side
    kind = cast(MonitorType, m.type)  # an IMAP/POP3 monitor's: never "heartbeat"
    job = make_job(kind, port, m.config, hostname="localhost", country="DE")
    job = msgspec.structs.replace(job, side_checks=side)
    checked = await CheckRunner(
        "DE-agent", allow_private=True, ssl_contexts=contexts, clock=WALL
    ).checked(job)
    checked.job_id = rig.job_ids.make(str(monitor["public_id"]), "DE", at, False)
    checked.monitor_id = str(monitor["public_id"])
    checked.scheduled_at = iso_ms(at)
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, [results.decode_result(encode(checked))], now=utcnow())
    await rig.alerter.burst()
    facts: dict[str, Any] = msgspec.to_builtins(checked.side_checks.get(WIRE.name))
    return facts


async def test_imap_to_microsoft_365_below_tls_1_2_is_found_and_cleared_at_1_2(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """Told by the greeting (a host name of the customer's own): TLS 1.0 only raises the
    finding; the same server at TLS 1.2 and later clears it."""
    config = {"protocol": "imap"}
    monitor = await rig.monitor(
        ["DE"], kind="imap", name="Exchange IMAP", hostname="imap.contoso.test", config=config
    )
    async with ImapPeer(greeting=IMAP_GREETING, starttls=outdated(CA, tls10=True)) as old:
        facts = await round_(rig, monitor, 0, old.port, contexts)
    assert facts == {
        "host": "localhost",
        "version": "TLSv1",
        "mode": "starttls",
        "certNames": ["localhost"],
    }
    body = await posture(api, rig, monitor)
    assert (CODE, "DE") in open_codes(body)
    found = next(f for f in body["findings"] if f["code"] == CODE)
    assert found["detail"] == "TLSv1 negotiated with localhost (starttls)"
    assert "MC1293480" in found["advice"] and "TLS 1.2" in found["advice"]
    async with ImapPeer(greeting=IMAP_GREETING, starttls=modern()) as new:
        facts = await round_(rig, monitor, 1, new.port, contexts)
    assert facts["version"] in ("TLSv1.2", "TLSv1.3")
    assert (CODE, "DE") not in open_codes(await posture(api, rig, monitor))


async def test_pop3_by_its_host_name_and_another_server_raises_nothing(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """POP3 to outlook.office365.com (by its name) at TLS 1.1 only: found. The same server
    behind a name of its own with a greeting of another product: TLS 1.0 is posture's
    `tls_below_1_2`, never this retirement's finding."""
    config = {"protocol": "pop3"}
    exo = await rig.monitor(
        ["DE"], kind="pop3", name="EXO POP3", hostname="outlook.office365.com", config=config
    )
    other = await rig.monitor(
        ["DE"], kind="pop3", name="Own POP3", hostname="pop.contoso.test", config=config
    )
    async with Pop3Peer(starttls=tls11_only()) as old:
        facts = await round_(rig, exo, 0, old.port, contexts)
        assert facts["version"] == "TLSv1.1"
        assert (CODE, "DE") in open_codes(await posture(api, rig, exo))
    async with Pop3Peer(starttls=outdated(CA, tls10=True)) as old:
        assert (await round_(rig, other, 0, old.port, contexts))["version"] == "TLSv1"
    codes = open_codes(await posture(api, rig, other))
    assert ("tls_below_1_2", "DE") in codes and (CODE, "DE") not in codes
    async with Pop3Peer(greeting=POP3_GREETING, starttls=modern()) as new:
        await round_(rig, exo, 1, new.port, contexts)
    assert (CODE, "DE") not in open_codes(await posture(api, rig, exo))


async def test_a_name_of_its_own_with_implicit_tls_is_told_by_microsofts_certificate(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """IMAP with TLS from the first byte at a name of the customer's own, pointed at Exchange
    Online: no greeting before the handshake, which fails on the name (the certificate is
    outlook.office365.com's), so the second look reads TLS 1.0 and the certificate a trusted
    chain vouches for: found. The same certificate from a CA nobody trusts tells nothing."""
    config = {"protocol": "imap", "tls": True}
    own = await rig.monitor(
        ["DE"], kind="imap", name="EXO by our name", hostname="imap.contoso.test", config=config
    )
    exo = outdated(CA, tls10=True, names=("outlook.office365.com", "*.office365.com"))
    async with ImapPeer(ssl_context=exo) as old:
        facts = await round_(rig, own, 0, old.port, contexts)
    assert facts["version"] == "TLSv1" and facts["mode"] == "implicit"
    assert facts["certNames"] == ["outlook.office365.com", "*.office365.com"]
    assert (CODE, "DE") in open_codes(await posture(api, rig, own))
    stranger = await rig.monitor(
        ["DE"], kind="imap", name="Forged", hostname="imap.fabrikam.test", config=config
    )
    forged = outdated(trustme.CA(), tls10=True, names=("outlook.office365.com",))
    async with ImapPeer(ssl_context=forged) as old:
        facts = await round_(rig, stranger, 0, old.port, contexts)
    assert facts["version"] == "TLSv1" and facts["certNames"] == []
    assert (CODE, "DE") not in open_codes(await posture(api, rig, stranger))
