"""The namespaces of testkit/netns.py do what the self-check tests rely on: port 25 egress is
dropped where asked (a connect times out) while other ports and other namespaces connect; the
resolver is the one configured, a dead one fails; a namespace leaves nothing behind, and what a
killed run left is swept. Real kernels, real nftables, real sockets."""

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.netns import (
    DEAD_RESOLVER,
    IP,
    NETNS_ETC,
    Namespaces,
    exclusive,
    missing,
    namespace,
    sweep,
)
from testkit.peers.dns import DnsPeer

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

CONNECT = """
import socket, sys
for port in map(int, sys.argv[2:]):
    try:
        socket.create_connection((sys.argv[1], port), timeout=1.0).close()
        print(port, "connected")
    except OSError as exc:
        print(port, type(exc).__name__)
"""

RESOLVE = """
import socket, sys
try:
    print(socket.getaddrinfo(sys.argv[1], 25, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
except socket.gaierror as exc:
    print("gaierror", exc.errno)
"""


def _listener(accepted: list[str]) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername")[0])
        writer.close()

    return on_connect


async def test_tcp_to_a_dropped_port_times_out_while_other_ports_and_namespaces_connect(
    netns: Namespaces,
) -> None:
    blocked = await netns.new(drop_tcp=[25])
    open_ = await netns.new()
    on_25: list[str] = []
    on_587: list[str] = []
    smtp = await asyncio.start_server(_listener(on_25), blocked.host_ip, 25)
    submission = await asyncio.start_server(_listener(on_587), blocked.host_ip, 587)
    try:
        (code_b, out_b), (code_o, out_o) = await asyncio.gather(
            blocked.run(sys.executable, "-c", CONNECT, blocked.host_ip, "25", "587"),
            open_.run(sys.executable, "-c", CONNECT, blocked.host_ip, "25", "587"),
        )
    finally:
        smtp.close()
        submission.close()
    assert (code_b, code_o) == (0, 0), out_b + out_o
    assert out_b.split("\n")[:2] == ["25 TimeoutError", "587 connected"]
    # Another namespace reaches the same host address, port 25 included: the drop is the
    # first namespace's own filter, not the listener or the routes.
    assert out_o.split("\n")[:2] == ["25 connected", "587 connected"]
    assert on_25 == [open_.ip]
    assert sorted(on_587) == sorted([blocked.ip, open_.ip])


async def test_a_namespace_resolves_through_its_configured_resolver_and_a_dead_one_fails(
    netns: Namespaces,
) -> None:
    healthy = await netns.new()
    broken = await netns.new(nameserver=DEAD_RESOLVER)
    healthy.use_resolver(healthy.host_ip)
    name = f"canary-{os.getpid()}.netns.test"
    async with DnsPeer({(name, "A"): [healthy.host_ip]}).at(healthy.host_ip, 53) as peer:
        _, conf = await broken.run("cat", "/etc/resolv.conf")
        assert f"nameserver {DEAD_RESOLVER}" in conf.splitlines()
        (_, good), (_, bad) = await asyncio.gather(
            healthy.run(sys.executable, "-c", RESOLVE, name),
            broken.run(sys.executable, "-c", RESOLVE, name),
        )
    assert good.strip() == healthy.host_ip
    assert (name, "A") in peer.asked
    # EAI_AGAIN: no resolver answered (not NXDOMAIN), after the configured 1 s timeout.
    assert bad.strip() == "gaierror -3"


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _links() -> str:
    return _run(IP, "-o", "link")


def _inside(name: str) -> set[int]:
    return {int(pid) for pid in _run(IP, "netns", "pids", name).split()}


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _run(IP, "netns", "list").splitlines() if line.strip()]


async def test_leaving_a_namespace_removes_it_its_veth_its_etc_folder_and_its_processes() -> None:
    async with namespace(drop_tcp=[25], nameserver=DEAD_RESOLVER) as ns:
        tracked = await ns.spawn("sleep", "60")
        untracked = await asyncio.create_subprocess_exec(*ns.command("sleep", "60"))
        for _ in range(500):  # until `ip netns exec` has entered it
            if untracked.pid in _inside(ns.name):
                break
            await asyncio.sleep(0.01)
        assert ns.name in _namespaces()
        assert f" {ns.link}@" in _links()
        assert (NETNS_ETC / ns.name / "resolv.conf").exists()
    assert ns.name not in _namespaces()
    assert f" {ns.link}@" not in _links()
    assert not (NETNS_ETC / ns.name).exists()
    assert tracked.returncode is not None
    assert await asyncio.wait_for(untracked.wait(), 5) == -9


def test_leftovers_of_a_killed_run_are_swept_and_those_of_a_live_one_kept() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])
    dead_name, live_name = f"mp-gw99-{gone.pid}-0", f"mp-gw99-{alive.pid}-0"
    orphan_folder = NETNS_ETC / f"mp-gw99-{gone.pid}-1"
    try:
        with exclusive():  # no other worker's namespace making sweeps them first
            for name in (dead_name, live_name):
                subprocess.run([IP, "netns", "add", name], check=True)
                (NETNS_ETC / name).mkdir(parents=True)
                (NETNS_ETC / name / "resolv.conf").write_text(f"nameserver {DEAD_RESOLVER}\n")
            inside = subprocess.Popen([IP, "netns", "exec", dead_name, "sleep", "60"])
            orphan_folder.mkdir()
            for _ in range(500):  # until `ip netns exec` has entered it
                if inside.pid in _inside(dead_name):
                    break
                time.sleep(0.01)
            assert sorted(sweep()) == sorted([dead_name, orphan_folder.name])
        assert dead_name not in _namespaces()
        assert not (NETNS_ETC / dead_name).exists()
        assert not orphan_folder.exists()
        assert inside.wait(5) == -9
        assert live_name in _namespaces()
        assert (NETNS_ETC / live_name).exists()
    finally:
        alive.kill()
        alive.wait()
        for name in (dead_name, live_name):
            subprocess.run([IP, "netns", "del", name], capture_output=True)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        shutil.rmtree(orphan_folder, ignore_errors=True)


def test_without_cap_net_admin_the_fixture_says_why_it_skips() -> None:
    """`missing()` is the fixture's skip reason: run where CAP_NET_ADMIN is dropped."""
    done = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-net_admin",
            "--inh-caps=-net_admin",
            sys.executable,
            "-c",
            "from testkit.netns import missing; print(missing())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.stdout.strip() == "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
