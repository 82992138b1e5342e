"""Debian's unbound as a validating resolver on a loopback port, run unprivileged in the
foreground from a temporary directory: it asks one signed zone of the test suite's
(testkit/peers/dnssec.py) at its authoritative peer and validates every answer against that
zone's trust anchor, so the AD bit it sets (or the SERVFAIL it answers) is real DNSSEC.

Nothing is downloaded at test time: `make test` installs the package when it is missing.
"""

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.asyncquery
import dns.exception
import dns.message

UNBOUND = "/usr/sbin/unbound"
START_S = 5.0
PORT_TRIES = 5


def missing() -> str | None:
    if not os.access(UNBOUND, os.X_OK):
        return f"{UNBOUND} is missing: `make test` installs Debian's unbound"
    return None


class Unbound:
    """`async with Unbound(zone, peer_port, anchor) as resolver:` validates answers for `zone`
    (asked at 127.0.0.1:`peer_port`) with `anchor` and serves them at `resolver.address`.
    Validation is strict: no `domain-insecure`, no permissive mode, so a bad signature is
    SERVFAIL, never an answer without AD."""

    def __init__(
        self,
        zone: str,
        peer_port: int,
        anchor: str,
        *,
        interface: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        """`interface` and `port`: where it serves (a free loopback port unless given: a
        system resolver of a sender under test answers on 53 of an address of its own)."""
        self.zone = zone
        self.peer_port = peer_port
        self.anchor = anchor
        self.interface = interface
        self._fixed = port
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"{self.interface}:{self.port}"

    def _server(self, where: Path) -> str:
        """The `server:` options every unbound of the tests runs with: loopback, unprivileged,
        in the foreground from `where`."""
        return f"""server:
    interface: {self.interface}
    port: {self.port}
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "{where}"
    pidfile: "{where}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: 1
    so-reuseport: no
"""

    def _config(self, where: Path) -> str:
        # The test's authoritative server is on loopback, which unbound never asks by default.
        return f"""{self._server(where)}    do-not-query-localhost: no
    module-config: "validator iterator"
    val-permissive-mode: no
    trust-anchor: "{self.anchor}"
    # Only the test's zone is resolved (`.test` is otherwise one of unbound's built-in empty
    # zones, RFC 6761); any other name is refused, and no query leaves loopback.
    local-zone: "." refuse
    local-zone: "{self.zone}" transparent
    outgoing-interface: 127.0.0.1
stub-zone:
    name: "{self.zone}"
    stub-addr: 127.0.0.1@{self.peer_port}
remote-control:
    control-enable: no
"""

    async def __aenter__(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="unbound-")
        try:
            said = ""
            for _ in range(PORT_TRIES):
                answer = await self._start(Path(self._dir.name))
                if answer is None:
                    return self
                said = answer
                # The port was free when picked; another process of a busy host took it
                # before unbound bound it. Another port, not a wait, is the cure.
                if "address already in use" not in said.lower():
                    break
            raise RuntimeError(f"unbound did not start on port {self.port}: {said[-2000:]}")
        except BaseException:
            self._dir.cleanup()
            raise

    async def _start(self, where: Path) -> str | None:
        """Start unbound on a free port; None once it answers there, else what it said."""
        self.port = self._fixed or _free_port()
        config = where / "unbound.conf"
        config.write_text(self._config(where))
        self._process = await asyncio.create_subprocess_exec(
            UNBOUND,
            "-d",
            "-c",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return await self._ready()

    async def _ready(self) -> str | None:
        """None once unbound answers a query on its port (it binds after reading its anchor);
        else, stopped, what it said on stderr."""
        assert self._process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_S
        query = dns.message.make_query(self.zone, "SOA")
        while loop.time() < deadline:
            if self._process.returncode is not None:
                break
            with contextlib.suppress(dns.exception.DNSException, OSError):
                await dns.asyncquery.udp(query, self.interface, timeout=0.2, port=self.port)
                return None
            await asyncio.sleep(0.05)
        await self._stop()
        assert self._process.stderr is not None
        return (await self._process.stderr.read()).decode(errors="replace")

    async def _stop(self) -> None:
        assert self._process is not None
        if self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()
        if self._dir is not None:
            self._dir.cleanup()


def _free_port() -> int:
    """A loopback port free for both UDP and TCP just now (unbound binds both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with (
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
                contextlib.suppress(OSError),
            ):
                tcp.bind(("127.0.0.1", port))
                return port


class UnboundZone(Unbound):
    """`async with UnboundZone("test", records) as server:` Debian's unbound serving `records`
    (testkit.peers.dns's `Records`: (name, type) → presentation texts, every name under
    `zone`) from a zone file of its own (`auth-zone`), and answering as a resolver from it,
    at `server.address`: a real DNS server's parsing and answers (TXT strings, truncation and
    TCP, CNAME chains, NXDOMAIN against NODATA) for what the loopback stand-in serves."""

    def __init__(self, zone: str, records: Mapping[tuple[str, str], Sequence[str]]) -> None:
        super().__init__(zone, 0, "")
        self.records = records

    def _zonefile(self) -> str:
        origin = self.zone.rstrip(".") + "."
        lines = [
            f"$ORIGIN {origin}",
            f"@ 300 IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 300",
            f"@ 300 IN NS ns.{origin}",
            f"ns.{origin} 300 IN A 127.0.0.1",
        ]
        for (name, rdtype), values in self.records.items():
            lines += [f"{name.rstrip('.')}. 300 IN {rdtype} {value}" for value in values]
        return "\n".join(lines) + "\n"

    def _config(self, where: Path) -> str:
        (where / "zone.db").write_text(self._zonefile())
        return f"""{self._server(where)}    module-config: "iterator"
    # Only the zone is answered (from its file); any other name is refused, and no query
    # leaves loopback.
    local-zone: "." refuse
    local-zone: "{self.zone}" transparent
auth-zone:
    name: "{self.zone}"
    zonefile: "{where}/zone.db"
    for-downstream: yes
    for-upstream: yes
    fallback-enabled: no
remote-control:
    control-enable: no
"""
