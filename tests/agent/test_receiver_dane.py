"""Senders graded with Postfix at `smtp_tls_security_level = dane` (issue 83), on real DNSSEC:
the receiving domain is a zone signed here (testkit/peers/dnssec.py) holding the receiver's MX
host and a TLSA record (`3 1 1`, its key) for the receiver's port; Debian's unbound validates it
against its trust anchor and answers on port 53 of a loopback address of its own; Postfix runs
in a mount namespace whose /etc/resolv.conf names that unbound.

What a `dane` sender does, each checked from what arrives and from its own log: it delivers over
TLS with the certificate verified by its TLSA record; it refuses a receiver whose key the TLSA
record does not name, and the plain twin that offers no STARTTLS (nothing arrives: graded as
enforcing, never `sender_tls_not_enforced`). The oracle is checked first: the same sender with
a resolver that validates nothing (the same records, no AD bit) falls back as Postfix documents
and delivers to the plain twin in the clear."""

import hashlib
import os
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import nats.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nats.js import JetStreamContext

from controller.arrivals.grading import Latest, Twin, verdicts
from controller.sidechecks.findings import Finding
from shared.arrivals import Arrival
from shared.embedded import free_port
from shared.timefmt import parse_iso
from testkit.peers import unbound
from testkit.peers.dns import DnsPeer
from testkit.peers.dnssec import SignedDnsPeer, signed_zone
from testkit.peers.postfix import SendingPostfix, missing
from tests.agent.test_receiver import DOMAIN, Rig, certificate, receiving, submit

__all__ = ["certificate"]  # the receiver's certificate fixture, shared with test_receiver.py

pytestmark = [
    pytest.mark.skipif(missing() is not None, reason=missing() or ""),
    pytest.mark.skipif(unbound.missing() is not None, reason=str(unbound.missing())),
    # Three Postfix instances, a signed zone and unbound: about 2 s on a quiet host.
    pytest.mark.timeout(180),
]
WAIT_S = 45  # for a delivery or a deferral, with Postfix's log in the failure

MX = f"mx.{DOMAIN}"


async def delivered(rig: Rig, monitor_id: str, postfix: SendingPostfix) -> Arrival:
    """The one arrival for `monitor_id`, waited for; past WAIT_S, an AssertionError holding
    what the sending Postfix logged."""
    try:
        [arrival] = await rig.arrivals(monitor_id, 1, within=WAIT_S)
    except nats.errors.TimeoutError:
        raise AssertionError(f"nothing arrived; Postfix logged: {postfix.log()[-3000:]}") from None
    return arrival


def spki_sha256(cert_file: str) -> str:
    """The TLSA `3 1 1` data of a PEM certificate: SHA-256 of its SubjectPublicKeyInfo."""
    leaf = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())[0]
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def resolver_address(n: int) -> str:
    """A loopback address of this process's own for port 53 (parallel workers differ)."""
    pid = os.getpid()
    return f"127.{50 + n}.{pid // 250 % 250 + 1}.{pid % 250 + 1}"


async def dane_dns(
    stack: AsyncExitStack, tmp: Path, tlsa: dict[int, str], *, validated: bool = True
) -> Path:
    """The receiving zone with its TLSA records (`tlsa`: port → the `3 1 1` data published
    for it) at a resolver on port 53, and a resolv.conf naming it. `validated`: the zone
    signed and the resolver a validating unbound (AD on its answers); else the same records
    from a resolver that validates nothing (no AD), as a sender's plain resolver."""
    records = {(MX, "A"): ["127.0.0.1"]}
    records |= {(f"_{port}._tcp.{MX}", "TLSA"): [f"3 1 1 {data}"] for port, data in tlsa.items()}
    if validated:
        address = resolver_address(1)
        zone, anchor = signed_zone(DOMAIN, records)
        peer = await stack.enter_async_context(SignedDnsPeer(zone))
        await stack.enter_async_context(
            unbound.Unbound(DOMAIN, peer.port, anchor, interface=address, port=53)
        )
    else:
        address = resolver_address(2)
        await stack.enter_async_context(DnsPeer(records, canaries=False).at(address, 53))
    conf = tmp / "resolv.conf"
    conf.write_text(f"nameserver {address}\noptions trust-ad\n")
    return conf


DANE_CF = "disable_dns_lookups = no\nsmtp_host_lookup = dns\nsmtp_dns_support_level = dnssec\n"


async def test_a_dane_sender_delivers_verified_and_refuses_what_its_tlsa_does_not_name(
    js: JetStreamContext, country: str, certificate: tuple[str, str], tmp_path: Path
) -> None:
    good, clear, other = (f"m-{uuid.uuid4().hex[:8]}" for _ in range(3))
    plain = free_port()
    async with (
        receiving(js, country, certificate, agent_receiver_plain_port=plain) as rig,
        AsyncExitStack() as stack,
    ):
        key = spki_sha256(certificate[0])
        main = rig.receiver.port
        # Published for both ports as an operator would: the receiver's key.
        resolv = await dane_dns(stack, tmp_path, {main: key, plain: key})
        to_good, to_clear = await rig.address(good), await rig.address(clear)

        # The oracle first: from a resolver that validates nothing (no AD bit), Postfix takes
        # the TLSA records as unsigned and `dane` falls back to `may`, as its documentation
        # says: it sends to the plain twin in the clear.
        weak = tmp_path / "weak"
        weak.mkdir()
        unvalidated = await dane_dns(stack, weak, {main: key, plain: key}, validated=False)
        async with SendingPostfix(
            DOMAIN, plain, "dane", extra_cf=DANE_CF, to_host=MX, resolv_conf=unvalidated
        ) as fallback:
            await submit(fallback, to_clear, "dane without validation")
            fell_back = await delivered(rig, clear, fallback)
            await fallback.until_logged("status=sent")
        assert (fell_back.tls_version, fell_back.starttls_offered) == (None, False)

        async with SendingPostfix(
            DOMAIN, main, "dane", extra_cf=DANE_CF, to_host=MX, resolv_conf=resolv
        ) as sender:
            await submit(sender, to_good, "nightly over dane")
            arrival = await delivered(rig, good, sender)
            verified = await sender.until_logged("TLS connection established")
        assert arrival.tls_version in ("TLSv1.2", "TLSv1.3") and arrival.starttls_offered
        assert verified.split(": ", 1)[1].startswith("Verified TLS"), verified
        print("dane:", verified.split(": ", 1)[1])

        async with SendingPostfix(
            DOMAIN, plain, "dane", extra_cf=DANE_CF, to_host=MX, resolv_conf=resolv
        ) as refusing:
            to_refused = await rig.address(other)
            await submit(refusing, to_refused, "must not go in the clear")
            line = await refusing.until_logged("status=deferred", within=WAIT_S)
        await rig.none_for(other)
        assert "TLS is required, but was not offered" in line, line
        print("dane at the plain twin:", line.rsplit("status=", 1)[1])

    # Graded as the controller grades a country's latest arrivals (controller.arrivals
    # .grading): the `dane` sender's mail over TLS at the address with none at the plain twin
    # clears `sender_tls_not_enforced`; the fallen-back sender's mail at the twin raises it.
    assert (arrival.listener, fell_back.listener) == ("", "plain")
    finding = ("sender_tls_not_enforced", country)
    refused = Latest(twins={"plain": Twin(refused_at=parse_iso(arrival.arrived_at))})
    assert verdicts(country, refused)[finding] is None
    sent = Latest(twins={"plain": Twin(at=parse_iso(fell_back.arrived_at))})
    assert isinstance(verdicts(country, sent)[finding], Finding)


async def test_a_dane_sender_refuses_a_key_its_tlsa_record_does_not_name(
    js: JetStreamContext, country: str, certificate: tuple[str, str], tmp_path: Path
) -> None:
    monitor = f"m-{uuid.uuid4().hex[:8]}"
    async with (
        receiving(js, country, certificate) as rig,
        AsyncExitStack() as stack,
    ):
        resolv = await dane_dns(stack, tmp_path, {rig.receiver.port: "ab" * 32})
        async with SendingPostfix(
            DOMAIN, rig.receiver.port, "dane", extra_cf=DANE_CF, to_host=MX, resolv_conf=resolv
        ) as sender:
            await submit(sender, await rig.address(monitor), "to the wrong key")
            line = await sender.until_logged("status=deferred", within=WAIT_S)
        await rig.none_for(monitor)
    assert "certificate verification failed" in line or "not verified" in line, line
    print("dane to another key:", line.rsplit("status=", 1)[1])
