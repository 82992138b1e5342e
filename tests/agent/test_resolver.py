"""agent.resolver: check targets resolved on the event loop, by getaddrinfo's rules, bounded per
tenant. The rules as tables; the lookups against a real DNS server on a loopback address of
this test's own, named in a resolv.conf of its own."""

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from agent.resolver import (
    Outcome,
    ResolvConf,
    TargetResolver,
    hosts_addresses,
    parse_resolv_conf,
    verdict,
)
from shared.clock import WALL
from testkit.peers.dns import DnsPeer
from testkit.peers.jobs import make_job
from tests.agent.helpers import until

# A loopback address per test process (parallel workers), port 53 as resolv.conf implies.
NAMESERVER = f"127.53.{os.getpid() >> 8 & 255}.{os.getpid() & 255 or 1}"
FAST, SLOW = "fast.test", "slow.test"
RECORDS = {
    (f"both.{FAST}", "A"): ["192.0.2.7"],
    (f"both.{FAST}", "AAAA"): ["2001:db8::7"],
    (f"v4.{FAST}", "A"): ["192.0.2.4"],
    (f"v4.{FAST}", "MX"): ["10 mx.example."],  # exists, has no AAAA
    (f"mx.{FAST}", "MX"): ["10 mx.example."],  # exists, no address at all
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ResolvConf((), 5.0, 2)),
        ("nameserver 10.0.0.1\n", ResolvConf(("10.0.0.1",), 5.0, 2)),
        (
            "# c\nnameserver 10.0.0.1\nnameserver ::1 ; x\noptions timeout:1 attempts:1 rotate\n",
            ResolvConf(("10.0.0.1", "::1"), 1.0, 1),
        ),
        ("options timeout:0 attempts:9\n", ResolvConf((), 1.0, 5)),
        ("options timeout:99 attempts:x\n", ResolvConf((), 30.0, 2)),
        (
            "".join(f"nameserver 10.0.0.{i}\n" for i in range(5)),
            ResolvConf(("10.0.0.0", "10.0.0.1", "10.0.0.2"), 5.0, 2),
        ),
    ],
)
def test_resolv_conf_is_read_as_glibc_reads_it(text: str, expected: ResolvConf) -> None:
    """Pins glibc's defaults (5 s, 2 attempts), caps (30 s, 5 attempts, 3 nameservers)."""
    assert parse_resolv_conf(text) == expected


@pytest.mark.parametrize(
    ("conf", "lifetime"),
    [
        (ResolvConf((), 5.0, 2), 10.0),
        (ResolvConf(("a", "b"), 1.0, 1), 2.0),
        (ResolvConf(("a", "b", "c"), 2.0, 3), 18.0),
    ],
)
def test_a_lookup_lasts_at_most_what_glibc_spends_on_one(conf: ResolvConf, lifetime: float) -> None:
    """Pins a lookup's own limit: every attempt at every nameserver, each within `timeout`."""
    assert conf.lifetime_s == lifetime


HOSTS = """\
127.0.0.1 localhost
::1 localhost ip6-localhost # comment names nothing: other.test
10.1.1.1  Mail.Corp  mail   # canonical name and alias
10.1.1.2  mail
not-an-ip mail
"""


@pytest.mark.parametrize(
    ("name", "addresses"),
    [
        ("localhost", ("127.0.0.1", "::1")),
        ("ip6-localhost", ("::1",)),
        ("mail.corp.", ("10.1.1.1",)),
        ("MAIL", ("10.1.1.1", "10.1.1.2")),
        ("other.test", ()),
        ("corp", ()),
    ],
)
def test_hosts_file_names_resolve_to_their_lines(name: str, addresses: tuple[str, ...]) -> None:
    """Pins /etc/hosts as glibc reads it: names and aliases, any case, every line, in order."""
    assert hosts_addresses(HOSTS, name) == addresses


def _no_v6_route(address: str) -> bool:
    return ":" not in address


@pytest.mark.parametrize(
    ("v6", "v4", "expected"),
    [
        (("2001:db8::1",), ("192.0.2.1",), ("2001:db8::1", "192.0.2.1")),
        ("transient", ("192.0.2.1",), ("192.0.2.1",)),
        (("2001:db8::1",), "transient", ("2001:db8::1",)),
        ("nodata", ("192.0.2.1", "192.0.2.1"), ("192.0.2.1",)),
        ("nxdomain", "nxdomain", socket.EAI_NONAME),
        ("nxdomain", "transient", socket.EAI_NONAME),
        ("transient", "nodata", socket.EAI_AGAIN),
        ("transient", "transient", socket.EAI_AGAIN),
        ("nodata", "nodata", socket.EAI_NODATA),
    ],
)
def test_the_answers_of_both_types_make_getaddrinfos_result(
    v6: Outcome, v4: Outcome, expected: tuple[str, ...] | int
) -> None:
    """Pins IPv6 first (RFC 6724 precedence), one type's failure not hiding the other's
    addresses, and getaddrinfo's error codes."""
    if isinstance(expected, tuple):
        assert verdict(v6, v4, lambda a: True) == expected
    else:
        with pytest.raises(socket.gaierror) as raised:
            verdict(v6, v4, lambda a: True)
        assert raised.value.errno == expected


def test_an_address_this_host_has_no_route_to_comes_last() -> None:
    """RFC 6724 rule 1: an IPv6-less agent tries IPv4 first."""
    assert verdict(("2001:db8::1",), ("192.0.2.1",), _no_v6_route) == ("192.0.2.1", "2001:db8::1")


@pytest.fixture
async def peer() -> AsyncIterator[DnsPeer]:
    async with DnsPeer(RECORDS, silent=frozenset({SLOW})).at(NAMESERVER, 53) as dns:
        yield dns


def _resolver(tmp_path: Path, timeout: int = 5, per_tenant: int | None = 2) -> TargetResolver:
    (tmp_path / "resolv.conf").write_text(
        f"nameserver {NAMESERVER}\noptions timeout:{timeout} attempts:1\n"
    )
    (tmp_path / "hosts").write_text("10.9.9.9 intranet.host\n")
    return TargetResolver(
        per_tenant=per_tenant,
        resolv_conf=str(tmp_path / "resolv.conf"),
        hosts=str(tmp_path / "hosts"),
    )


async def test_literals_localhost_the_hosts_file_and_invalid_ask_no_nameserver(
    peer: DnsPeer, tmp_path: Path
) -> None:
    """Pins what getaddrinfo answered without DNS: IP literals, `localhost` (RFC 6761 6.3),
    hosts-file names; a `.invalid` name fails at once (RFC 6761 6.4)."""
    resolver = _resolver(tmp_path)
    assert await resolver.resolve("192.0.2.1") == ("192.0.2.1",)
    assert await resolver.resolve("2001:DB8::1") == ("2001:db8::1",)
    assert await resolver.resolve("localhost") == ("127.0.0.1", "::1")
    assert await resolver.resolve("Intranet.Host.") == ("10.9.9.9",)
    with pytest.raises(socket.gaierror) as raised:
        await resolver.resolve("nohost.invalid")
    assert raised.value.errno == socket.EAI_NONAME
    assert peer.asked == []


async def test_a_changed_hosts_file_is_read_again_on_the_next_lookup(
    peer: DnsPeer, tmp_path: Path
) -> None:
    """The hosts file is parsed once per change, not per lookup: an edit still counts at once."""
    resolver = _resolver(tmp_path)
    hosts = tmp_path / "hosts"
    assert await resolver.resolve("intranet.host") == ("10.9.9.9",)
    hosts.write_text(
        "10.1.2.3 intranet.host other.host\n2001:db8::5 Other.Host.\n10.1.2.4 1pw.host\n"
    )
    assert await resolver.resolve("intranet.host") == ("10.1.2.3",)
    assert await resolver.resolve("other.host") == ("10.1.2.3", "2001:db8::5")
    assert await resolver.resolve("1pw.host") == ("10.1.2.4",)  # a name may start with a digit
    hosts.unlink()
    with pytest.raises(socket.gaierror):
        await resolver.resolve("other.host")  # asked of the nameserver, which has no such name
    assert await resolver.resolve("1.2.3.4") == ("1.2.3.4",)


async def test_names_are_asked_for_both_types_and_fail_as_getaddrinfo_did(
    peer: DnsPeer, tmp_path: Path
) -> None:
    """Pins A and AAAA asked at once, and getaddrinfo's codes: EAI_NONAME (NXDOMAIN),
    EAI_NODATA (no address), EAI_AGAIN (no reply within resolv.conf's timeout)."""
    resolver = _resolver(tmp_path, timeout=1)
    assert set(await resolver.resolve(f"both.{FAST}")) == {"2001:db8::7", "192.0.2.7"}
    assert await resolver.resolve(f"v4.{FAST}") == ("192.0.2.4",)
    codes = {}
    for name in (f"nx.{FAST}", f"mx.{FAST}", f"x.{SLOW}"):
        with pytest.raises(socket.gaierror) as raised:
            await resolver.resolve(name)
        codes[name] = raised.value.errno
    assert codes == {
        f"nx.{FAST}": socket.EAI_NONAME,
        f"mx.{FAST}": socket.EAI_NODATA,
        f"x.{SLOW}": socket.EAI_AGAIN,  # after resolv.conf's 1 s: no reply
    }
    assert {(f"both.{FAST}", "A"), (f"both.{FAST}", "AAAA")} <= set(peer.asked)


async def _asked(peer: DnsPeer, count: int) -> None:
    """Until `count` A queries under SLOW reached the server."""
    await until(lambda: sum(n.endswith(SLOW) and t == "A" for n, t in peer.asked) >= count, 5)


async def test_a_tenant_past_its_bound_waits_while_another_resolves_at_once(
    peer: DnsPeer, tmp_path: Path
) -> None:
    """Pins the bound on lookups: with its 2 lookups unanswered, tenant a's third waits (its
    query is not even sent) while tenant b resolves; a freed slot lets a's third through."""
    resolver = _resolver(tmp_path)
    assert resolver.bound is not None
    slow = [asyncio.create_task(resolver.resolve(f"{i}.{SLOW}", "a")) for i in range(2)]
    await _asked(peer, 2)
    third = asyncio.create_task(resolver.resolve(f"both.{FAST}", "a"))
    assert await resolver.resolve(f"v4.{FAST}", "b") == ("192.0.2.4",)
    assert not third.done() and resolver.bound.waiting("a") == 1
    assert (f"both.{FAST}", "A") not in peer.asked
    slow[0].cancel()
    assert set(await third) == {"2001:db8::7", "192.0.2.7"}
    slow[1].cancel()
    await asyncio.gather(*slow, return_exceptions=True)
    assert resolver.bound.tenants == 0


@pytest.mark.timeout(20)
async def test_the_checks_deadline_cancels_its_lookup_and_keeps_the_result_shapes(
    peer: DnsPeer, tmp_path: Path, ssl_contexts: SslContexts
) -> None:
    """Pins `timeout (during dns)` at the check's deadline, however long the resolver would
    wait (30 s here: a check that waited for it outlasts this test's timeout, and would say
    `dns`, not the deadline's `timeout`), with nothing of the lookup left behind; `dns` for a
    name that does not exist, as with getaddrinfo."""
    resolver = _resolver(tmp_path, timeout=30)
    assert resolver.bound is not None
    job = make_job("smtp", 25, hostname=f"mx.{SLOW}", timeout=0.5, tenant="a")
    result = await run_check(job, "agent", True, ssl_contexts, resolver, clock=WALL)
    assert (result.status, result.error_kind) == ("down", "timeout")
    assert result.message == "no answer within 0.5s (during dns)"
    assert result.phases.dns_ms is None
    assert resolver.bound.tenants == 0
    gone = await run_check(
        make_job("smtp", 25, hostname=f"nx.{FAST}", tenant="a"),
        "agent",
        True,
        ssl_contexts,
        resolver,
        clock=WALL,
    )
    assert (gone.error_kind, gone.message) == (
        "dns",
        f"cannot resolve nx.{FAST}: Name or service not known",
    )
