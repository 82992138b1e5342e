"""Senders graded against ground truth: real Postfix senders of known configuration deliver to
a real receiver's normal port (STARTTLS offered) and its plain twin (none offered); the intake
stores the arrivals from ARRIVALS and grades them into findings in PostgreSQL, per country,
each appearing once with one notice and cleared by a later arrival that shows it fixed. The
receiver's clock is set to each sending time, the intake's to when it stores."""

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import dkim
import msgspec
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.js import JetStreamContext

from agent.dns_resolver import blocking_resolver
from agent.receiver.book import AddressBook, watch
from agent.receiver.server import Receiver
from agent.receiver.verdicts import Lookup
from agent.settings import ReceiverSettings
from controller.arrivals.intake import ArrivalsIntake
from controller.notify.links import Links
from controller.posture.senders import Grader
from shared.arrivals import RECEIVERS_BUCKET, Arrival, ReceivingAddress, encode, new_local_part
from shared.clock import ManualClock
from shared.embedded import free_port
from shared.subjects import arrivals_subject
from testkit.peers.dns import DnsPeer, Records
from testkit.peers.opendkim import OpenDkim
from testkit.peers.opendkim import missing as opendkim_missing
from testkit.peers.postfix import SendingPostfix, missing
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")

DOMAIN = "rx.mailprobe.test"
SENDER = "sender.mailprobe.test"
T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PRIVATE = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
_PUBLIC = base64.b64encode(
    _KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
RECORDS = {
    (SENDER, "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
    (f"_dmarc.{SENDER}", "TXT"): ['"v=DMARC1; p=reject"'],
    (f"s1._domainkey.{SENDER}", "TXT"): [
        " ".join(
            f'"{t[i : i + 255]}"'
            for t in [f"v=DKIM1; k=rsa; p={_PUBLIC}"]
            for i in range(0, len(t), 255)
        )
    ],
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def raw(subject: str, *, signed: bool) -> bytes:
    body = (
        f"From: reports@{SENDER}\r\nTo: grading@{DOMAIN}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@{SENDER}>\r\n"
        "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n\r\nthe nightly report\r\n"
    ).encode()
    if not signed:
        return body
    signature = dkim.sign(
        body, b"s1", SENDER.encode(), _PRIVATE, include_headers=[b"from", b"subject"]
    )
    return bytes(signature) + body


@pytest.fixture
async def monitor(pipe_pool: asyncpg.Pool, org: Tenant) -> AsyncIterator[tuple[int, str]]:
    """A monitor receiving mail (an SMTP row stands in for the receiving kind)."""
    async with pipe_pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, config, notification_email)"
            " VALUES ($1, $2, 'smtp', 'outbound', 'mail.sender.mailprobe.test', 25, 'disabled',"
            " 60, 30, '{}', 'postmaster@sender.mailprobe.test') RETURNING id, public_id",
            org.org_id,
            org.customer_id,
        )
    assert row is not None
    yield row["id"], str(row["public_id"])


class Rig:
    def __init__(
        self, receiver: Receiver, clock: ManualClock, intake: ArrivalsIntake, to: str
    ) -> None:
        self.receiver, self.clock, self.intake, self.to = receiver, clock, intake, to
        self.intake_clock = ManualClock(T0)

    async def deliver(
        self,
        minutes: float,
        port: int,
        level: str,
        subject: str,
        *,
        signed: bool,
        milter: int | None = None,
        extra_cf: str = "",
        expect: str | None = None,
    ) -> str:
        """A message sent through a Postfix of `level` to `port` at `minutes`; its log line
        saying `expect` (`sent`, `deferred`; by default `sent` for `may` or the address)."""
        self.clock.set(at(minutes))
        message = raw(subject, signed=signed)
        if expect is None:
            expect = "sent" if level == "may" or port == self.receiver.port else "deferred"
        async with SendingPostfix(DOMAIN, port, level, milter, extra_cf) as postfix:
            await postfix.submit(f"reports@{SENDER}", [self.to], message)
            return await postfix.until_logged(f"status={expect}")

    async def store(self, minutes: float, want: int) -> None:
        """The intake stores (and grades) `want` new arrivals at `minutes`."""
        self.intake_clock.set(at(minutes))
        stored = 0
        # The receiver publishes after its parse, off the loop: a busy machine takes seconds.
        deadline = time.monotonic() + 45
        while stored < want and time.monotonic() < deadline:
            stored += await self.intake.step(0.2)
        assert stored == want


async def _findings(pool: asyncpg.Pool, monitor_id: int) -> list[tuple[str, str, bool]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT code, country, cleared_at IS NULL AS open FROM posture_findings"
            " WHERE monitor_id = $1 ORDER BY code, appeared_at",
            monitor_id,
        )
    return [(r["code"], r["country"], r["open"]) for r in rows]


async def _notices(pool: asyncpg.Pool, monitor_id: int) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT subject FROM notification_outbox WHERE monitor_id = $1 AND kind = 'finding'"
            " AND channel = 'email' ORDER BY id",
            monitor_id,
        )
    return [r["subject"] for r in rows]


@asynccontextmanager
async def grading(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    country: str,
    public_id: str,
    where: Path,
    records: Records,
) -> AsyncIterator[Rig]:
    """A receiver of `country` (STARTTLS with a certificate for DOMAIN, and a plain port) taking
    mail for the monitor `public_id`, its DNS `records`, and the intake grading what it stores."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    leaf = ca.issue_cert(DOMAIN)
    cert, key = where / "cert.pem", where / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    local = new_local_part()
    kv = await js.key_value(RECEIVERS_BUCKET)
    await kv.put(local, encode(ReceivingAddress(monitor_id=public_id)))
    settings = msgspec.convert(
        {
            "AGENT_RECEIVER_DOMAIN": DOMAIN,
            "AGENT_RECEIVER_HOST": "127.0.0.1",
            "AGENT_RECEIVER_PORT": 0,
            "AGENT_RECEIVER_PLAIN_PORT": free_port(),
            "AGENT_RECEIVER_TLS_1_0_PORT": free_port(),
            "AGENT_RECEIVER_BAD_CERT_PORT": free_port(),
            "AGENT_RECEIVER_CERT_FILE": str(cert),
            "AGENT_RECEIVER_KEY_FILE": str(key),
        },
        ReceiverSettings,
    )

    async def publish(arrival: Arrival) -> None:
        await js.publish(
            arrivals_subject(country, arrival.monitor_id),
            encode(arrival),
            headers={"Nats-Msg-Id": arrival.arrival_id},
        )

    clock, intake_clock = ManualClock(T0), ManualClock(T0)
    graded = Grader(Links()).grade
    intake = ArrivalsIntake(js, pool, keep_days=30, clock=intake_clock, graded=graded)
    stop = asyncio.Event()
    async with DnsPeer(records) as dns:
        receiver = Receiver(
            settings,
            country=country,
            agent_id=f"{country}-rx",
            book=AddressBook(),
            publish=publish,
            lookup=Lookup(blocking_resolver(f"127.0.0.1:{dns.port}")),
            clock=clock,
            hostname="mx.rx.mailprobe.test",
        )
        watching = asyncio.create_task(watch(js, receiver.book, stop))
        await receiver.start()
        rig = Rig(receiver, clock, intake, f"{local}@{DOMAIN}")
        rig.intake_clock = intake_clock
        try:
            await asyncio.wait_for(receiver.book.ready.wait(), 10)
            yield rig
        finally:
            stop.set()
            watching.cancel()
            await receiver.stop()
            await intake.close()


async def test_postfix_senders_graded_by_what_arrived_at_the_address_and_its_plain_twin(
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    monitor: tuple[int, str],
    tmp_path: Path,
) -> None:
    [country] = countries.take()
    monitor_id, public_id = monitor
    async with grading(js, pipe_pool, country, public_id, tmp_path, RECORDS) as rig:
        normal, plain = rig.receiver.port, rig.receiver.plain_port
        # `may`, unsigned: over TLS at the address, in the clear at the twin.
        await rig.deliver(0, normal, "may", "test one", signed=False)
        await rig.store(0, 1)
        first = await _findings(pipe_pool, monitor_id)
        await rig.deliver(0.1, plain, "may", "test one", signed=False)
        await rig.store(0.2, 1)
        second = await _findings(pipe_pool, monitor_id)
        # Again the same: nothing new is found or told.
        await rig.deliver(30, normal, "may", "test two", signed=False)
        await rig.deliver(30.1, plain, "may", "test two", signed=False)
        await rig.store(30.2, 2)
        again = await _findings(pipe_pool, monitor_id)
        told = await _notices(pipe_pool, monitor_id)
        # `encrypt`, signed: the twin never gets it (Postfix defers), the address does.
        line = await rig.deliver(60, plain, "encrypt", "test three", signed=True)
        await rig.deliver(60, normal, "encrypt", "test three", signed=True)
        await rig.store(60, 1)
        signed = await _findings(pipe_pool, monitor_id)
        # The next test, once the last settled without a twin: the fallback is fixed.
        await rig.deliver(90, normal, "encrypt", "test four", signed=True)
        await rig.store(90, 1)
        fixed = await _findings(pipe_pool, monitor_id)
    dk, ne = "sender_dkim_missing", "sender_tls_not_enforced"
    assert first == [(dk, country, True)]
    assert second == [(dk, country, True), (ne, country, True)]
    assert again == second
    assert len(told) == 2 and any("Sender DKIM missing" in s for s in told), told
    assert any("Sender TLS not enforced" in s for s in told), told
    assert "TLS is required, but was not offered" in line
    # DKIM passes now; the twin's fallback still stands (the last test is not yet settled).
    assert signed == [(dk, country, False), (ne, country, True)]
    assert fixed == [(dk, country, False), (ne, country, False)]
    assert len(await _notices(pipe_pool, monitor_id)) == 2  # a clearing is not paged


OTHER = "other.mailprobe.test"


@pytest.mark.skipif(opendkim_missing() is not None, reason=opendkim_missing() or "")
async def test_opendkim_signing_and_dmarc_alignment_graded_against_the_senders_setup(
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    monitor: tuple[int, str],
    tmp_path: Path,
) -> None:
    """Postfix (`may`) with no milter, then with OpenDKIM signing its From domain (d= the From
    domain: aligned), then signing it as another domain (unaligned); SPF fails everywhere
    (`-all`), so DMARC passes only by the aligned signature: `sender_dkim_missing` holds only
    while unsigned, `sender_dmarc_fail` whenever the signature is not aligned."""
    [country] = countries.take()
    monitor_id, public_id = monitor
    records: Records = {
        (SENDER, "TXT"): ['"v=spf1 -all"'],
        (f"_dmarc.{SENDER}", "TXT"): ['"v=DMARC1; p=reject"'],
    }
    milter: OpenDkim | None  # a signing milter, or None: unsigned
    async with OpenDkim({SENDER: SENDER}) as aligned, OpenDkim({SENDER: OTHER}) as unaligned:
        for milter in (aligned, unaligned):
            records |= {(name, "TXT"): [text] for name, text in milter.records.items()}
        async with grading(js, pipe_pool, country, public_id, tmp_path, records) as rig:
            port, seen = rig.receiver.port, []
            for n, milter in enumerate((None, aligned, unaligned)):
                await rig.deliver(
                    n * 30,
                    port,
                    "may",
                    f"test {n}",
                    signed=False,
                    milter=None if milter is None else milter.port,
                )
                await rig.store(n * 30, 1)
                seen.append(await _findings(pipe_pool, monitor_id))
    dk, dm = "sender_dkim_missing", "sender_dmarc_fail"
    assert seen[0] == [(dk, country, True), (dm, country, True)]
    assert seen[1] == [(dk, country, False), (dm, country, False)]
    assert seen[2] == [(dk, country, False), (dm, country, False), (dm, country, True)]
    async with pipe_pool.acquire() as conn:
        verdicts = await conn.fetch(
            "SELECT dkim, dkim_domains, dmarc FROM arrivals WHERE monitor_id = $1"
            " ORDER BY arrived_at",
            monitor_id,
        )
    assert [(v["dkim"], v["dkim_domains"], v["dmarc"]) for v in verdicts] == [
        ("none", [], "fail"),
        ("pass", [SENDER], "pass"),
        ("pass", [OTHER], "fail"),
    ]


def verifying(where: Path, *ports: int) -> str:
    """main.cf lines of a sender that verifies the receiver at each of `ports` as DOMAIN's MX
    would be (`secure`, the test CA trusted, the certificate matching DOMAIN)."""
    entries = ", ".join(f"{{ [127.0.0.1]:{port} = secure match={DOMAIN} }}" for port in ports)
    return f"smtp_tls_CAfile = {where}/ca.pem\nsmtp_tls_policy_maps = inline:{{ {entries} }}\n"


# Seven Postfix instances, each started, handed a message and waited on for its delivery or
# deferral, and four stores: about 40 s on a loaded machine of half the tuned speed.
@pytest.mark.timeout(120)
async def test_twins_of_old_tls_and_a_bad_certificate_graded_against_postfix(
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    monitor: tuple[int, str],
    tmp_path: Path,
) -> None:
    """Debian's Postfix with `encrypt` and its default protocols neither verifies nor refuses
    TLS 1.0: it delivers to the twin offering only TLS 1.0 (over it) and to the twin whose
    certificate expired and names another host. Hardened (`smtp_tls_mandatory_protocols =
    >=TLSv1.2`, and `secure` matching DOMAIN with the CA trusted) it defers at both twins and
    delivers to the address; once that test settles, the next arrival clears both findings."""
    [country] = countries.take()
    monitor_id, public_id = monitor
    async with grading(js, pipe_pool, country, public_id, tmp_path, RECORDS) as rig:
        r = rig.receiver
        normal, old, bad = r.port, r.twin_port("tls_1_0"), r.twin_port("bad_cert")
        for port in (normal, bad, old):
            await rig.deliver(0, port, "encrypt", "one", signed=True, expect="sent")
        await rig.store(0, 3)
        first = await _findings(pipe_pool, monitor_id)
        hardened = "smtp_tls_mandatory_protocols = >=TLSv1.2\n" + verifying(tmp_path, normal, bad)
        said = {}
        for port in (normal, bad, old):
            said[port] = await rig.deliver(
                30, port, "encrypt", "two", signed=True, extra_cf=hardened
            )
        await rig.store(30, 1)
        second = await _findings(pipe_pool, monitor_id)
        await rig.deliver(45, normal, "encrypt", "three", signed=True, extra_cf=hardened)
        await rig.store(45, 1)
        third = await _findings(pipe_pool, monitor_id)
    async with pipe_pool.acquire() as conn:
        took = await conn.fetch(
            "SELECT listener, tls_version FROM arrivals WHERE monitor_id = $1"
            " ORDER BY arrived_at, listener",
            monitor_id,
        )
    t10, uv = "sender_tls_1_0_accepted", "sender_tls_unverified"
    assert [(a["listener"], a["tls_version"]) for a in took] == [
        ("", "TLSv1.3"),
        ("bad_cert", "TLSv1.3"),
        ("tls_1_0", "TLSv1"),
        ("", "TLSv1.3"),
        ("", "TLSv1.3"),
    ]
    assert first == [(t10, country, True), (uv, country, True)]
    assert second == first  # the hardened test is not yet settled
    assert "Server certificate not verified" in said[bad] or "verif" in said[bad], said[bad]
    assert "status=deferred" in said[old]
    assert third == [(t10, country, False), (uv, country, False)]


async def test_grading_a_monitor_with_a_long_history_stays_quick(
    pipe_pool: asyncpg.Pool, monitor: tuple[int, str]
) -> None:
    """A monitor whose address took its most (30 messages per 10 minutes) for 30 days in two
    countries, a plain twin's copy with every third: one grading pass reads only the newest of
    each kind among its newest arrivals (GRADED_ROWS), so it stays well under a second."""
    monitor_id, _ = monitor
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO arrivals (arrival_id, monitor_id, country, agent_id, arrived_at, peer,"
            " tls_version, starttls_offered, size, dkim, dmarc, listener)"
            " SELECT gen_random_uuid(), $1, cc, cc || '-1', $2::timestamptz - i * interval '20 s',"
            " '192.0.2.1', CASE WHEN i % 3 = 0 THEN NULL ELSE 'TLSv1.3' END, i % 3 <> 0, 500,"
            " 'pass', 'pass', CASE WHEN i % 3 = 0 THEN 'plain' ELSE '' END"
            " FROM generate_series(1, 129600) AS i, unnest(ARRAY['DE', 'FR']) AS cc",
            monitor_id,
            T0,
        )
        await conn.execute("ANALYZE arrivals")
        rows = await conn.fetchval(
            "SELECT count(*) FROM arrivals WHERE monitor_id = $1", monitor_id
        )
        grader = Grader(Links())
        took = []
        for _ in range(3):
            start = time.perf_counter()
            async with conn.transaction():
                await grader.grade(conn, [monitor_id], T0)
            took.append(time.perf_counter() - start)
        found = await _findings(pipe_pool, monitor_id)
    ms = [round(t * 1000) for t in took]
    print(f"grading a monitor of {rows} arrivals: {ms} ms, load {os.getloadavg()}")
    assert found == [
        ("sender_tls_not_enforced", "DE", True),
        ("sender_tls_not_enforced", "FR", True),
    ]
    assert min(took) < 1.0
