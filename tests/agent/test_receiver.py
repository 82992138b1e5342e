"""The agent's SMTP receiver against real senders: Debian's Postfix delivering to it with
`smtp_tls_security_level` `may` and `encrypt`, and a plain SMTP client for what Postfix would
never send (a relay attempt, an unknown address, a flood of one address). Each arrival is read
back from the ARRIVALS stream, as the controller reads it; the receiving addresses come from the
`RECEIVERS` bucket, as the controller writes them."""

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import msgspec
import pytest
import trustme
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import REGISTRY

from agent.dns_resolver import blocking_resolver
from agent.receiver.book import AddressBook, watch
from agent.receiver.server import Receiver
from agent.receiver.verdicts import Lookup
from agent.settings import ReceiverSettings
from shared.arrivals import (
    RECEIVERS_BUCKET,
    Arrival,
    ReceivingAddress,
    decode_arrival,
    encode,
    new_local_part,
)
from shared.clock import WALL
from shared.embedded import free_port
from shared.subjects import arrivals_subject
from testkit.peers.dns import DnsPeer
from testkit.peers.postfix import SendingPostfix, missing

needs_postfix = pytest.mark.skipif(missing() is not None, reason=missing() or "")

DOMAIN = "rx.mailprobe.test"
SENDER = "sender.mailprobe.test"
SILENT = "silent.mailprobe.test"  # its DNS never answers
RECORDS = {
    (SENDER, "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
    (f"_dmarc.{SENDER}", "TXT"): ['"v=DMARC1; p=reject"'],
}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    where = tmp_path_factory.mktemp("receiver-cert")
    leaf = trustme.CA().issue_cert(DOMAIN)
    cert, key = where / "cert.pem", where / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


class Rig:
    def __init__(self, js: JetStreamContext, country: str, receiver: Receiver) -> None:
        self.js, self.country, self.receiver = js, country, receiver

    async def address(self, monitor_id: str, tenant: str = "t1") -> str:
        """A receiving address for `monitor_id`, put in the bucket as the controller does, once
        the receiver's book holds it."""
        local = new_local_part()
        kv = await self.js.key_value(RECEIVERS_BUCKET)
        await kv.put(local, encode(ReceivingAddress(monitor_id=monitor_id, tenant=tenant)))
        for _ in range(200):
            if self.receiver.book.get(local) is not None:
                return f"{local}@{DOMAIN}"
            await asyncio.sleep(0.01)
        raise AssertionError("the book never took the address")

    async def arrivals(self, monitor_id: str, count: int, within: float = 20) -> list[Arrival]:
        sub = await self.js.subscribe(
            arrivals_subject(self.country, monitor_id),
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
            ordered_consumer=True,
        )
        try:
            out = []
            for _ in range(count):
                out.append(decode_arrival((await sub.next_msg(timeout=within)).data))
            return out
        finally:
            await sub.unsubscribe()

    async def none_for(self, monitor_id: str) -> None:
        """No arrival stored for `monitor_id` (asked after what would have stored one)."""
        info = await self.js.stream_info("ARRIVALS", subjects_filter=">")
        assert arrivals_subject(self.country, monitor_id) not in (info.state.subjects or {})


@asynccontextmanager
async def receiving(
    js: JetStreamContext, country: str, cert: tuple[str, str] | None, **limits: object
) -> AsyncIterator[Rig]:
    settings = msgspec.convert(
        {
            "AGENT_RECEIVER_DOMAIN": DOMAIN,
            "AGENT_RECEIVER_HOST": "127.0.0.1",
            "AGENT_RECEIVER_PORT": 0,
            "AGENT_RECEIVER_CERT_FILE": cert and cert[0],
            "AGENT_RECEIVER_KEY_FILE": cert and cert[1],
            **{k.upper(): v for k, v in limits.items()},
        },
        ReceiverSettings,
    )
    stop = asyncio.Event()
    async with DnsPeer(RECORDS, silent=frozenset({SILENT})) as dns:

        async def publish(arrival: Arrival) -> None:
            await js.publish(
                arrivals_subject(country, arrival.monitor_id),
                encode(arrival),
                headers={"Nats-Msg-Id": arrival.arrival_id},
            )

        receiver = Receiver(
            settings,
            country=country,
            agent_id=f"{country}-rx",
            book=AddressBook(),
            publish=publish,
            lookup=Lookup(blocking_resolver(f"127.0.0.1:{dns.port}")),
            clock=WALL,
            hostname="mx.rx.mailprobe.test",
        )
        watching = asyncio.create_task(watch(js, receiver.book, stop))
        await receiver.start()
        try:
            await asyncio.wait_for(receiver.book.ready.wait(), 10)
            yield Rig(js, country, receiver)
        finally:
            stop.set()
            watching.cancel()
            await receiver.stop()


def message(to: str, subject: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Nightly <reports@{SENDER}>"
    m["To"] = to
    m["Subject"] = subject
    m.set_content("the nightly report\n" * 20)
    return m


async def submit(postfix: SendingPostfix, to: str, subject: str) -> None:
    """A message to `to` handed to `postfix` (its log in the failure when it takes none)."""
    await postfix.submit(f"reports@{SENDER}", [to], message(to, subject))


@needs_postfix
@pytest.mark.parametrize("level", ["may", "encrypt"])
async def test_postfix_delivers_over_starttls_and_the_arrival_says_what_it_saw(
    js: JetStreamContext, country: str, certificate: tuple[str, str], level: str
) -> None:
    """Postfix with `smtp_tls_security_level` `may` or `encrypt` upgrades with STARTTLS; the
    arrival names the peer, HELO, MAIL FROM, TLS version and cipher, size, From and Subject,
    SPF `pass` (ip4:127.0.0.1), DKIM and ARC `none` (unsigned), DMARC `pass` by aligned SPF
    with the record's `p=reject`."""
    monitor_id = f"m-{uuid.uuid4().hex[:8]}"
    async with receiving(js, country, certificate) as rig:
        to = await rig.address(monitor_id)
        async with SendingPostfix(DOMAIN, rig.receiver.port, level) as postfix:
            await submit(postfix, to, f"nightly {level}")
            [arrival] = await rig.arrivals(monitor_id, 1)
            await postfix.until_logged("status=sent")
    assert (arrival.monitor_id, arrival.country, arrival.peer) == (monitor_id, country, "127.0.0.1")
    assert arrival.helo == "mail.mailprobe.test"
    assert arrival.mail_from == f"reports@{SENDER}"
    assert arrival.tls_version in ("TLSv1.2", "TLSv1.3") and arrival.tls_cipher
    assert arrival.starttls_offered is True
    assert arrival.header_from == f"reports@{SENDER}"
    assert arrival.subject == f"nightly {level}"
    assert arrival.size > 400
    v = arrival.verdicts
    assert (v.spf, v.dkim, v.dmarc, v.dmarc_policy, v.arc) == (
        "pass",
        "none",
        "pass",
        "reject",
        "none",
    )
    assert to.partition("@")[0].encode() not in encode(arrival)  # the address never travels


@needs_postfix
async def test_senders_graded_at_the_port_without_starttls(
    js: JetStreamContext, country: str, certificate: tuple[str, str]
) -> None:
    """The plain port offers no STARTTLS (the senders' test) while the main port does:
    Postfix with `may` sends there in the clear (the arrival says no TLS and no STARTTLS
    offered), with `encrypt` it refuses and keeps its message queued: nothing arrives."""
    clear, kept = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    async with receiving(js, country, certificate, agent_receiver_plain_port=free_port()) as rig:
        to_clear, to_kept = await rig.address(clear), await rig.address(kept)
        async with SendingPostfix(DOMAIN, rig.receiver.plain_port, "may") as may:
            await submit(may, to_clear, "in the clear")
            [arrival] = await rig.arrivals(clear, 1)
        async with SendingPostfix(DOMAIN, rig.receiver.plain_port, "encrypt") as encrypt:
            await submit(encrypt, to_kept, "must be encrypted")
            line = await encrypt.until_logged("status=deferred")
        await rig.none_for(kept)
    assert (arrival.tls_version, arrival.tls_cipher, arrival.starttls_offered) == (
        None,
        None,
        False,
    )
    assert "TLS is required, but was not offered" in line


@needs_postfix
async def test_postfix_told_no_such_mailbox_at_rcpt_keeps_nothing(
    js: JetStreamContext, country: str, certificate: tuple[str, str]
) -> None:
    """An address the bucket does not hold is refused at RCPT (550 5.1.1): Postfix bounces it
    to its own sender, the receiver took nothing."""
    async with receiving(js, country, certificate) as rig:
        async with SendingPostfix(DOMAIN, rig.receiver.port, "may") as postfix:
            await submit(postfix, f"{new_local_part()}@{DOMAIN}", "to nobody")
            line = await postfix.until_logged("status=bounced")
        assert rig.receiver.counts.rcpt_unknown == 1 and rig.receiver.counts.taken == 0
    assert "550 5.1.1" in line


def _session(port: int) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.ehlo("client.test")
    return s


async def test_relay_unknown_address_and_rate_are_refused_at_rcpt(
    js: JetStreamContext, country: str
) -> None:
    """Another domain: 550 5.7.1, never relayed; an unknown local part: 550 5.1.1; an address
    past its messages per window: 452 (try later), the earlier ones taken."""
    monitor_id = f"m-{uuid.uuid4().hex[:8]}"
    async with receiving(js, country, None, agent_receiver_messages_per_address=2) as rig:
        to = await rig.address(monitor_id)

        def talk() -> list[tuple[int, bytes]]:
            with _session(rig.receiver.port) as s:
                s.mail(f"x@{SENDER}")
                said = [s.rcpt("victim@example.org"), s.rcpt(f"hb-nobody@{DOMAIN}")]
                s.rset()
                for n in range(3):
                    s.mail(f"x@{SENDER}")
                    said.append(s.rcpt(to))
                    if said[-1][0] == 250:
                        said.append(s.data(message(to, f"n{n}").as_bytes(policy=SMTP_POLICY)))
                    else:
                        s.rset()
                return said

        said = await asyncio.to_thread(talk)
        arrivals = await rig.arrivals(monitor_id, 2)
    codes = [c for c, _ in said]
    assert codes == [550, 550, 250, 250, 250, 250, 452]
    assert said[0][1].startswith(b"5.7.1") and said[1][1].startswith(b"5.1.1")
    assert [a.subject for a in arrivals] == ["n0", "n1"]


async def test_the_plain_twin_takes_its_own_domain_and_the_address_port_the_other(
    js: JetStreamContext, country: str, certificate: tuple[str, str]
) -> None:
    """With AGENT_RECEIVER_PLAIN_DOMAIN the plain port takes the local parts at that domain
    only, the address's port at AGENT_RECEIVER_DOMAIN only (550 5.7.1 for the other): one
    message to both is two deliveries a sender routes apart, one per listener."""
    monitor_id = f"m-{uuid.uuid4().hex[:8]}"
    twin = f"plain.{DOMAIN}"
    settings = {"agent_receiver_plain_port": free_port(), "agent_receiver_plain_domain": twin}
    async with receiving(js, country, certificate, **settings) as rig:
        to = await rig.address(monitor_id)
        local = to.partition("@")[0]

        def talk(port: int) -> list[int]:
            with _session(port) as s:
                s.mail(f"x@{SENDER}")
                codes = [s.rcpt(to)[0], s.rcpt(f"{local}@{twin}")[0]]
                s.data(message(to, f"to {port}").as_bytes(policy=SMTP_POLICY))
                return codes

        port, plain = rig.receiver.port, rig.receiver.plain_port
        at_address = await asyncio.to_thread(talk, port)
        at_twin = await asyncio.to_thread(talk, plain)
        arrivals = await rig.arrivals(monitor_id, 2)
    assert at_address == [250, 550] and at_twin == [550, 250]
    assert [(a.subject, a.starttls_offered) for a in arrivals] == [
        (f"to {port}", True),
        (f"to {plain}", False),
    ]


async def test_size_and_connection_caps_hold(js: JetStreamContext, country: str) -> None:
    """A message past AGENT_RECEIVER_MAX_BYTES gets 552 and no arrival; a source past its
    connections gets 421 at once; a session past its time is closed with 421."""
    monitor_id = f"m-{uuid.uuid4().hex[:8]}"
    async with receiving(
        js,
        country,
        None,
        agent_receiver_max_bytes=4096,
        agent_receiver_connections_per_source=2,
        agent_receiver_session_seconds=1.0,
    ) as rig:
        to = await rig.address(monitor_id)

        def big() -> tuple[int, bytes | str]:
            with _session(rig.receiver.port) as s:
                s.mail(f"x@{SENDER}")
                s.rcpt(to)
                m = message(to, "big")
                m.set_content(("x" * 70 + "\n") * 150)
                try:
                    return s.data(m.as_bytes(policy=SMTP_POLICY))
                except smtplib.SMTPDataError as exc:
                    return exc.smtp_code, exc.smtp_error

        said = await asyncio.to_thread(big)
        assert said[0] == 552, said
        held = [await asyncio.open_connection("127.0.0.1", rig.receiver.port) for _ in range(2)]
        third = await asyncio.open_connection("127.0.0.1", rig.receiver.port)
        assert (await third[0].readline()).startswith(b"421 4.7.0")
        for reader, _ in held:
            assert (await reader.readline()).startswith(b"220 ")
            # idle past the session's time
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"421 4.4.2")
        for _, writer in [*held, third]:
            writer.close()
        counts = rig.receiver.counts
        assert (counts.connections_refused, counts.sessions_expired, counts.taken) == (1, 2, 0)
        for reason, n in (("connections", 1), ("session_time", 2)):
            assert (
                REGISTRY.get_sample_value(
                    "mailprobe_agent_receiver_refusals_total",
                    {"country": country, "reason": reason},
                )
                == n
            )
        await rig.none_for(monitor_id)


def test_a_certificate_that_does_not_load_stops_the_agent_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate")
    with pytest.raises(msgspec.ValidationError, match="AGENT_RECEIVER_CERT_FILE"):
        msgspec.convert(
            {
                "AGENT_RECEIVER_DOMAIN": DOMAIN,
                "AGENT_RECEIVER_CERT_FILE": str(bad),
                "AGENT_RECEIVER_KEY_FILE": str(bad),
            },
            ReceiverSettings,
        )


async def test_one_organization_holds_at_most_half_the_parsers(
    js: JetStreamContext, country: str
) -> None:
    """One parser, so three messages may be read or wait, one of them an organization's: while
    a message of organization A is read (its sender's DNS never answers, so it takes seconds),
    A's next gets 451 and B's is taken."""
    slow, quick = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    async with receiving(js, country, None, agent_receiver_parsers=1) as rig:
        to = {slow: await rig.address(slow, "A"), quick: await rig.address(quick, "B")}

        def send(address: str, sender: str) -> int:
            with _session(rig.receiver.port) as s:
                s.mail(sender)
                s.rcpt(address)
                try:
                    return s.data(message(address, "x").as_bytes(policy=SMTP_POLICY))[0]
                except smtplib.SMTPDataError as exc:
                    return exc.smtp_code

        first = asyncio.create_task(asyncio.to_thread(send, to[slow], f"x@{SILENT}"))
        while rig.receiver.counts.taken == 0 and not first.done():
            if rig.receiver.parsing("A"):  # A's first is being read
                break
            await asyncio.sleep(0.01)
        second = await asyncio.to_thread(send, to[slow], f"y@{SENDER}")
        other = await asyncio.to_thread(send, to[quick], f"z@{SENDER}")
        assert (await first, second, other) == (250, 451, 250)
