"""Network namespaces for tests of an agent's own network path (issue 16): a process in one
sees the machine only through a veth pair, with egress filtered by nftables and a resolver of
the test's choosing, as a cloud VM with port 25 blocked or a broken resolver does.

Each namespace gets a /30 of `POOL`: the host side of the pair holds `.1` (`host_ip`), the
namespace side `.2` (`ip`). Inside, `lo` is up and `POOL` is routed to the host, so a process
there reaches every service that listens on any namespace's `host_ip` (the services under test
bind those, not 127.0.0.1, which inside a namespace is its own loopback). Nothing else is
routed, and the nftables ruleset drops any other destination too, so no packet leaves the
machine even where the host forwards.

A resolver is set through `/etc/netns/<name>/resolv.conf`, which `ip netns exec` bind-mounts
over `/etc/resolv.conf` for the processes it starts. `DEAD_RESOLVER` is an address every
namespace routes into an ifb device of its own, which (redirecting nothing) discards what it is
sent: a resolver that never answers (the query is sent, no reply comes; an nftables drop
would fail the send at once with EPERM).

Names are `mp-<xdist worker>-<owner pid>-<n>`, unique across parallel workers; what a killed
run left behind (its owner pid is dead) is removed before a new namespace is made. Needs root
(CAP_NET_ADMIN and CAP_SYS_ADMIN: `ip netns` mounts) and Debian's iproute2 and nftables, which
`make test` installs when missing; without them the fixture skips and says why.
"""

import asyncio
import contextlib
import fcntl
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IP = "/usr/sbin/ip"
NFT = "/usr/sbin/nft"
# A private range no network of this machine uses; the last /30 is never given out: inside
# every namespace it leads to a device that discards (DEAD_RESOLVER).
POOL = ipaddress.IPv4Network("10.199.0.0/16")
RESERVED = ipaddress.IPv4Network("10.199.255.252/30")
DEAD_RESOLVER = "10.199.255.253"
NETNS_ETC = Path("/etc/netns")
# Held while a /30 is picked and its host side set, so parallel workers never pick the same.
LOCK = Path("/run/lock/mailprobe-netns.lock")
NAME = re.compile(r"^mp-[A-Za-z0-9]+-(?P<pid>[0-9]+)-[0-9]+$")
INSIDE_LINK = "veth0"
VOID_LINK = "void0"
STOP_S = 5.0

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21

_serial = itertools.count()


def missing() -> str | None:
    """Why this process cannot make network namespaces, or None when it can."""
    for binary, package in ((IP, "iproute2"), (NFT, "nftables")):
        if not os.access(binary, os.X_OK):
            return f"{binary} is missing: `make test` installs Debian's {package}"
    status = Path("/proc/self/status").read_text()
    found = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M)
    effective = int(found[1], 16) if found else 0
    if not (effective >> CAP_NET_ADMIN & 1 and effective >> CAP_SYS_ADMIN & 1):
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    return None


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run([IP, *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _nft(name: str, ruleset: str) -> None:
    done = subprocess.run(
        [IP, "netns", "exec", name, NFT, "-f", "-"],
        input=ruleset,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"nft in {name}: {done.stderr.strip()}\n{ruleset}")


@dataclass
class Netns:
    """One namespace: `name`, the host side's `host_ip` and the namespace's own `ip`."""

    name: str
    link: str
    host_ip: str
    ip: str
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    def command(self, *argv: str) -> list[str]:
        """`argv` as run inside the namespace (with its resolv.conf)."""
        return [IP, "netns", "exec", self.name, *argv]

    async def spawn(
        self, *argv: str, env: dict[str, str] | None = None, **kw: Any
    ) -> asyncio.subprocess.Process:
        """Start `argv` inside; it is stopped (SIGTERM, then SIGKILL) when the namespace goes.
        `ip netns exec` execs `argv` in place, so the process's pid is the program's."""
        process = await asyncio.create_subprocess_exec(*self.command(*argv), env=env, **kw)
        self.processes.append(process)
        return process

    async def run(
        self, *argv: str, env: dict[str, str] | None = None, within: float = 10.0
    ) -> tuple[int, str]:
        """Run `argv` inside to its end; its exit code and its output (stdout and stderr)."""
        process = await self.spawn(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(process.communicate(), within)
        assert process.returncode is not None
        return process.returncode, out.decode(errors="replace")

    def filter_egress(self, drop_tcp: Iterable[int] = (), drop_to: Iterable[str] = ()) -> None:
        """Replace the namespace's egress filter: TCP to `drop_tcp` ports is dropped (SYNs
        vanish, as a provider's block does: the connect times out), and so is every packet to
        the `drop_to` addresses (another namespace's host side: its services unreachable from
        here) and to outside loopback and `POOL`."""
        ports = sorted(set(drop_tcp))
        addresses = sorted(set(drop_to))
        ruleset = [
            "flush ruleset",
            "table inet mailprobe {",
            "  chain output {",
            "    type filter hook output priority filter; policy accept;",
            f"    ip daddr != {{ 127.0.0.0/8, {POOL} }} drop",
            "    meta nfproto ipv6 oifname != lo drop",
        ]
        if ports:
            ruleset.append(f"    tcp dport {{ {', '.join(map(str, ports))} }} drop")
        if addresses:
            ruleset.append(f"    ip daddr {{ {', '.join(addresses)} }} drop")
        _nft(self.name, "\n".join([*ruleset, "  }", "}", ""]))

    def use_resolver(self, nameserver: str) -> None:
        """Processes started from now on resolve through `nameserver` (port 53), giving up
        after one second, so a dead one fails fast."""
        folder = NETNS_ETC / self.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text(
            f"nameserver {nameserver}\noptions timeout:1 attempts:1\n"
        )

    async def stop_processes(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.terminate()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), STOP_S)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """While held, no other process (another xdist worker) makes or sweeps namespaces."""
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _remove(name: str, link: str | None = None) -> None:
    """Kill every process inside, then delete the namespace (its veth pair with it) and its
    /etc/netns folder. Deleting the host end first frees its /30 at once; the namespace's own
    devices are destroyed by the kernel asynchronously."""
    for pid in _ip("netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    if link is not None:
        _ip("link", "del", link, check=False)
    _ip("netns", "del", name, check=False)
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def sweep() -> list[str]:
    """Remove the namespaces (and /etc/netns folders) of runs whose owner pid is dead; their
    names. Call it within `exclusive()`."""
    names = {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}
    if NETNS_ETC.is_dir():
        names |= {p.name for p in NETNS_ETC.iterdir()}
    stale = [
        name for name in sorted(names) if (m := NAME.match(name)) and not _alive(int(m["pid"]))
    ]
    for name in stale:
        _remove(name)
    return stale


def _used_blocks() -> set[ipaddress.IPv4Network]:
    used = {RESERVED}
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        address = ipaddress.IPv4Interface(line.split()[3])
        if address.ip in POOL:
            used.add(ipaddress.IPv4Network(f"{address.ip}/30", strict=False))
    return used


def _create(drop_tcp: Iterable[int], nameserver: str | None) -> Netns:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    pid, n = os.getpid(), next(_serial)
    name, link = f"mp-{worker}-{pid}-{n}", f"mp{pid}-{n}"
    with exclusive():
        sweep()
        used = _used_blocks()
        block = next(b for b in POOL.subnets(new_prefix=30) if b not in used)
        host_ip, ip = str(block[1]), str(block[2])
        _ip("netns", "add", name)
        ns = Netns(name, link, host_ip, ip)
        try:
            # The peer is made inside at once: no moment with both ends on the host.
            _ip("link", "add", link, "type", "veth", "peer", "name", INSIDE_LINK, "netns", name)
            _ip("addr", "add", f"{host_ip}/30", "dev", link)
        except BaseException:
            _remove(name, link)
            raise
    try:
        _ip("link", "set", link, "up")
        _ip("-n", name, "addr", "add", f"{ip}/30", "dev", INSIDE_LINK)
        _ip("-n", name, "link", "set", INSIDE_LINK, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", str(POOL), "via", host_ip)
        _ip("-n", name, "link", "add", VOID_LINK, "type", "ifb")
        _ip("-n", name, "link", "set", VOID_LINK, "up")
        _ip("-n", name, "route", "add", str(RESERVED), "dev", VOID_LINK)
        ns.filter_egress(drop_tcp)
        if nameserver is not None:
            ns.use_resolver(nameserver)
    except BaseException:
        _remove(name, link)
        raise
    return ns


@asynccontextmanager
async def namespace(
    *, drop_tcp: Iterable[int] = (), nameserver: str | None = None
) -> AsyncIterator[Netns]:
    """A namespace whose egress drops TCP to `drop_tcp` ports and, if `nameserver` is given,
    which resolves through it; removed with every process inside at exit."""
    # `ip` runs in a thread: the loop keeps serving the test's peers meanwhile.
    ns = await asyncio.to_thread(_create, drop_tcp, nameserver)
    try:
        yield ns
    finally:
        await ns.stop_processes()
        await asyncio.to_thread(_remove, ns.name, ns.link)


class Namespaces:
    """Makes namespaces that all go when the owner's exit stack closes."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self._stack = stack

    async def new(self, *, drop_tcp: Iterable[int] = (), nameserver: str | None = None) -> Netns:
        return await self._stack.enter_async_context(
            namespace(drop_tcp=drop_tcp, nameserver=nameserver)
        )


@pytest.fixture
async def netns() -> AsyncIterator[Namespaces]:
    """`await netns.new(drop_tcp=[25], nameserver=DEAD_RESOLVER)`: namespaces for this test;
    skips (with the reason) where this process cannot make them."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    async with AsyncExitStack() as stack:
        yield Namespaces(stack)
