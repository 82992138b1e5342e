"""A round trip's DKIM selector, from real servers (issue 67): Debian's OpenDKIM signs what
Debian's Postfix takes for submission (a milter on loopback), Postfix delivers it into Dovecot,
the agent's round-trip prober finds it there and reads its `DKIM-Signature`; the readiness side
check then reads that selector's key through a loopback DNS server, and a key OpenDKIM signs
with but that is published revoked is `dkim_revoked`. Skipped, saying why, without Postfix's
root, Dovecot or OpenDKIM (`make dovecot opendkim`)."""

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from agent.sidechecks.base import Round
from agent.sidechecks.readiness import ReadinessProbe, runner
from controller.sidechecks.readiness import rules
from shared.clock import WALL
from shared.embedded import free_port
from shared.messages import RoundTripConfig, RoundTripReceive, RoundTripSend, SmtpAuth, TlsOptions
from shared.secret import Secret
from shared.sidechecks.readiness import ReadinessAsk
from testkit.oauth2 import postfix
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.peers.dns import DnsPeer, Records
from testkit.peers.jobs import make_job

OPENDKIM = "/usr/sbin/opendkim"
GENKEY = "/usr/sbin/opendkim-genkey"
USER = "alice@example.com"
SELECTOR = "mp2026"
TLS = TlsOptions(servername="localhost")


class SigningPostfix(Postfix):
    """The tests' Postfix with OpenDKIM as its milter at `milter` (loopback port)."""

    def __init__(self, milter: int, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.milter = milter

    def main_cf(self) -> str:
        return super().main_cf() + (
            f"smtpd_milters = inet:127.0.0.1:{self.milter}\nmilter_default_action = tempfail\n"
        )


async def _opendkim(where: Path, port: int) -> asyncio.subprocess.Process:
    """OpenDKIM in the foreground signing example.com's mail with a key it makes (selector
    SELECTOR); returns once it listens on `port`."""
    proc = await asyncio.create_subprocess_exec(
        GENKEY, "-b", "2048", "-d", "example.com", "-s", SELECTOR, "-D", str(where)
    )
    assert await proc.wait() == 0
    shutil.chown(where / f"{SELECTOR}.private", "opendkim")
    (where / f"{SELECTOR}.private").chmod(0o600)
    conf = where / "opendkim.conf"
    conf.write_text(
        f"Mode s\nDomain example.com\nSelector {SELECTOR}\n"
        f"KeyFile {where}/{SELECTOR}.private\nSocket inet:{port}@127.0.0.1\n"
        "Background no\nSyslog no\nUserID opendkim\nInternalHosts 127.0.0.1\n"
        f"PidFile {where}/opendkim.pid\n"
    )
    server = await asyncio.create_subprocess_exec(
        OPENDKIM, "-f", "-x", str(conf), stderr=asyncio.subprocess.PIPE
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline and server.returncode is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return server
        except OSError:
            await asyncio.sleep(0.05)
    if server.returncode is None:
        server.kill()
    raise AssertionError(
        f"opendkim did not listen: {await server.stderr.read() if server.stderr else b''!r}"
    )


@pytest.fixture(scope="module")
async def signing(ca: trustme.CA, imap_pop: Dovecot) -> AsyncIterator[tuple[SigningPostfix, Path]]:
    if (why := postfix.missing()) is not None:
        pytest.skip(why)
    if not os.access(OPENDKIM, os.X_OK) or not os.access(GENKEY, os.X_OK):
        pytest.skip(f"{OPENDKIM} is missing: `make opendkim` installs Debian's opendkim")
    # OpenDKIM refuses a configuration or key under a directory others may write (/tmp): /run
    # is root's alone.
    with tempfile.TemporaryDirectory(prefix="mailprobe-opendkim-", dir="/run") as d:
        where = Path(d)
        os.chmod(where, 0o755)
        port = free_port()
        server = await _opendkim(where, port)
        try:
            async with SigningPostfix(
                port, ca, imap_pop.auth_socket, imap_pop.homes, imap_pop.owner
            ) as pf:
                yield pf, where
        finally:
            server.terminate()
            await server.wait()


async def test_the_selector_opendkim_signs_with_is_read_and_a_revoked_key_found(
    signing: tuple[SigningPostfix, Path], imap_pop: Dovecot, ssl_contexts: SslContexts
) -> None:
    submission, where = signing
    send = RoundTripSend(
        secure=True,
        auth=SmtpAuth(
            user=USER, mechanism="XOAUTH2", access_token=Secret(imap_pop.issuer.issue(USER))
        ),
        tls_options=TLS,
        sender=USER,
    )
    receive = RoundTripReceive(
        protocol="imap",
        hostname="127.0.0.1",
        port=imap_pop.ports["imaps"],
        user=USER,
        mechanism="OAUTHBEARER",
        access_token=Secret(imap_pop.issuer.issue(USER)),
        tls=True,
        tls_options=TLS,
    )
    job = make_job(
        "roundtrip",
        submission.ports["smtps"],
        RoundTripConfig(send=send, to=USER, receive=receive),
        timeout=15.0,
    )
    result = await run_check(job, "agent-readiness", True, ssl_contexts, clock=WALL)
    assert result.status == "up", result.message + submission.log()[-3000:]
    assert result.auth_results is not None, submission.log()[-3000:]
    signed = [(s.domain, s.selector) for s in result.auth_results.signatures]
    assert signed == [("example.com", SELECTOR)]
    # The key as opendkim-genkey wrote its DNS record, then the same selector revoked.
    published = (where / f"{SELECTOR}.txt").read_text()
    record = "".join(part.split('"')[1] for part in published.split("\n") if '"' in part)
    assert record.startswith("v=DKIM1; h=sha256; k=rsa;"), record
    for zone, revoked in ((record, False), ("v=DKIM1; k=rsa; p=", True)):
        text = " ".join(f'"{zone[i : i + 250]}"' for i in range(0, len(zone), 250))
        records: Records = {(f"{SELECTOR}._domainkey.example.com", "TXT"): [text]}
        async with DnsPeer(records) as peer:
            run = runner(ReadinessProbe(resolver=peer.address, canaries=()))
            facts = await run(
                ReadinessAsk(domain="example.com"),
                Round(job=job, result=result, port=submission.ports["smtps"], resolver=None),
            )
        assert facts is not None
        key = next(k for k in facts.dkim if k.selector == SELECTOR)
        assert key.signing and key.revoked == revoked
        assert key.bits == (None if revoked else 2048)
        found = rules.readiness(facts, "DE")[("dkim_revoked", "DE")]
        assert (found is not None) == revoked
