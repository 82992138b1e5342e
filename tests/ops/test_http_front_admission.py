"""The API's HTTP front admitting anonymous clients, on `controller serve` (the `api` role) run
as a process of its own on loopback (tests/ops/http_front.py), judged as in
tests/ops/test_http_front.py (`/health` p99 under 100 ms, RSS growth under 100 MiB).

- The TLS handshake: inside API_HEAD_SECONDS, and counted in the connection caps.
- The open-files limit: the replica's cap stays below it, so `/health` still gets in.
- Websocket upgrades hold no slot; a client gone mid-body is its abort (499), not a 5xx.
- The rate per source address, directly and behind the shipped HAProxy.

Tests asking for the same settings share a process (tests/ops/http_front.py's Shared): the
websocket upgrades and the client gone mid-body; the two rate tests.
"""

import asyncio
import contextlib
import json
import re
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from shared import embedded
from testkit.common import cpu_s
from testkit.front_attacks import (
    MIB,
    Watch,
    all_accepted,
    answer_status,
    closed_within,
    connect,
    fetch,
    get,
    half_body,
    in_threads,
    one_byte_chunks,
    open_fds,
    requests_from,
    silent,
)
from testkit.trust import trusting
from tests.deploy.test_load_balancer import HAPROXY, local_config
from tests.ops.http_front import ATTACKERS, Serve, judge

pytestmark = pytest.mark.breadth


def _tls(tmp_path: Path) -> tuple[ssl.SSLContext, dict[str, str]]:
    """A client context trusting a throwaway CA, and the API_TLS_* settings of a server
    certificate it signed for 127.0.0.1."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "api.pem", tmp_path / "api.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ctx = trusting(ca)
    return ctx, {"API_TLS_CERT_FILE": str(certfile), "API_TLS_KEY_FILE": str(keyfile)}


async def test_a_tls_handshake_is_inside_the_head_deadline(serve: Serve, tmp_path: Path) -> None:
    """API_HEAD_SECONDS=1 on HTTPS: a connection that never starts its handshake is closed
    within about a second, not held for asyncio's 60 s; one whose handshake ends at 0.6 s has
    the rest of that second for its head."""
    ctx, tls = _tls(tmp_path)

    def slow_handshake() -> float | None:
        """A handshake begun 0.6 s after the connect, then nothing: closed at about 1 s from
        the connect (the head's deadline counts the handshake), not 1.6 s."""
        raw = connect(served.port, ATTACKERS[1])
        began = time.monotonic()
        time.sleep(0.6)
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            took = closed_within(sock, 15)
        return None if took is None else time.monotonic() - began

    async with serve(ctx=ctx, API_HEAD_SECONDS="1", **tls) as served:
        with connect(served.port, ATTACKERS[0]) as sock:
            took = await asyncio.to_thread(closed_within, sock, 15)
        print(f"a handshake never begun: closed after {took} s")
        assert took is not None and took < 3, took
        took = await asyncio.to_thread(slow_handshake)
        print(f"a handshake done at 0.6 s, then no head: closed {took} s after the connect")
        # At about 1 s; a deadline counted from the handshake's end would be past 1.6 s.
        assert took is not None and took < 1.55, took
        assert await asyncio.to_thread(get, served.port, "/health", "127.0.0.1", ctx) == 200


async def test_tls_handshakes_are_counted_in_the_connection_caps(
    serve: Serve, tmp_path: Path
) -> None:
    """HTTPS with 8 connections per address and 24 per replica: 40 connections from one address
    that never begin their handshake hold 8 of the server's fds, not 40, for the head's
    10 s; then 64 more from eight addresses hold the replica's 24, and `/health` over TLS
    still gets in (a new connection takes the place of a handshake waiting longest)."""
    ctx, tls = _tls(tmp_path)
    caps = {"API_MAX_CONNECTIONS": "24", "API_MAX_CONNECTIONS_PER_ADDRESS": "8"}
    async with serve(ctx=ctx, **caps, **tls) as served:
        base = served.baseline()
        held = await asyncio.to_thread(silent, served.port, ATTACKERS[:1], 40)
        try:
            await asyncio.sleep(1)
            one = open_fds(served.pid) - base[1]
            with served.watch().running() as watch:
                held += await asyncio.to_thread(silent, served.port, ATTACKERS, 64)
                await asyncio.sleep(3)
        finally:
            for sock in held:
                sock.close()
        print(f"handshakes never begun: fds +{one} from one address")
        judge(watch, base, "handshakes never begun from eight addresses")
        assert one <= 8 + 2, f"fds +{one} for 40 handshakes from one address (cap 8)"
        assert max(watch.fds) - base[1] <= 24 + 4, watch.line(*base)


async def test_health_gets_in_at_the_open_files_limit(serve: Serve) -> None:
    """RLIMIT_NOFILE 256 and 320 silent connections from eight addresses (each under the
    per-address cap): the replica's cap stays below the limit, so `/health` is answered. Judged
    at the limit, once the server has accepted them all: a probe that came in behind the burst
    would wait for its accepts, which the flood tests (tests/ops/test_http_front.py) judge."""
    async with serve(nofile=256) as served:
        base = served.baseline()
        held = await asyncio.to_thread(silent, served.port, ATTACKERS, 320)
        try:
            took = await asyncio.to_thread(all_accepted, served.port)
            with served.watch().running() as watch:
                await asyncio.sleep(5)
        finally:
            for sock in held:
                sock.close()
        print(f"the burst accepted {took:.2f} s after its last connect")
        judge(watch, base, "at the open-files limit")


async def test_websocket_upgrades_hold_no_slot_of_the_caps(serve: Serve) -> None:
    """The API serves no websocket: 100 upgrade requests from one address, each closed by its
    client, leave the address's slots free (an upgraded connection would leave uvicorn's
    protocol, and its slot with it)."""
    upgrade = (
        b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )

    def upgrades() -> list[int]:
        statuses = []
        for _ in range(100):
            with connect(served.port, ATTACKERS[0]) as sock:
                sock.sendall(upgrade)
                statuses.append(answer_status(sock))
        return statuses

    async with serve() as served:
        statuses = await asyncio.to_thread(upgrades)
        await asyncio.sleep(0.5)
        print(f"upgrades: answered {sorted(set(statuses))}")
        assert await asyncio.to_thread(get, served.port, "/health", ATTACKERS[0]) == 200


async def test_a_client_gone_mid_body_is_its_abort_not_a_server_error(serve: Serve) -> None:
    """Five clients each send half of a declared 2,000-byte login body and close: each request
    is logged as the client's abort (status 499, at info), nothing is logged as an error, and
    /metrics counts no 5xx for the route."""
    async with serve() as served:
        await asyncio.to_thread(
            in_threads,
            lambda i: half_body(served.port, ATTACKERS[i], "/api/auth/login", 2000),
            5,
        )
        await asyncio.sleep(0.5)
        exposed = await asyncio.to_thread(fetch, served.port, "/metrics")
    lines = [json.loads(line) for line in served.log if line.startswith(b"{")]
    logins = [e for e in lines if e.get("event") == "request" and e["path"] == "/api/auth/login"]
    print(f"a client gone mid-body: {[(e['status'], e['level']) for e in logins]}")
    assert [(e["status"], e["level"]) for e in logins] == [(499, "info")] * 5, logins
    assert not [e for e in lines if e.get("level") in ("error", "critical")], lines
    series = [
        line
        for line in exposed.decode().splitlines()
        if line.startswith("mailprobe_api_request_seconds_count") and "/api/auth/login" in line
    ]
    assert series and not [line for line in series if 'status="5xx"' in line], series


@contextlib.asynccontextmanager
async def _haproxy(backend: int, tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """deploy/haproxy/haproxy.cfg, its addresses on loopback, in front of the controller on
    port `backend` alone: its port and pid, once it answers `/health`."""
    if not HAPROXY.exists():
        pytest.fail("Debian's haproxy is missing: make test-debs installs it")
    port = embedded.free_port()
    config = local_config(port, {"controller": backend})
    config = re.sub(r"^  server controller-2 .*\n", "", config, flags=re.M)
    (tmp_path / "haproxy.cfg").write_text(config)
    proc = await asyncio.create_subprocess_exec(
        str(HAPROXY), "-db", "-f", str(tmp_path / "haproxy.cfg"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(500):
            if await asyncio.to_thread(get, port, "/health", "127.0.0.11") == 200:
                break
            await asyncio.sleep(0.02)
        yield port, proc.pid
    finally:
        proc.kill()
        await proc.wait()


async def test_one_byte_chunks_through_the_shipped_haproxy(serve: Serve, tmp_path: Path) -> None:
    """deploy/haproxy/haproxy.cfg (its addresses on loopback) in front of a served controller
    that trusts it: two clients sending 1.8 MB bodies of 1-byte chunks through it, 3.5 MB/s in
    all, for 8 s. `/health` asked through HAProxy stays under 100 ms at p99 and the
    controller's RSS grows under 100 MiB: HAProxy re-frames the chunks, the controller's own
    bound refuses what still comes in small pieces."""
    async with (
        serve(API_TRUSTED_PROXIES="127.0.0.1") as served,
        _haproxy(served.port, tmp_path) as (port, haproxy),
    ):
        base = served.baseline()
        haproxy_cpu = cpu_s(haproxy)
        with Watch(served.pid, port).running() as watch:
            found = await asyncio.to_thread(
                in_threads,
                lambda i: one_byte_chunks(port, ATTACKERS[i], 8, 1.75 * MIB, 1_800_000),
                2,
            )
        haproxy_cpu = cpu_s(haproxy) - haproxy_cpu
    statuses = [s for got in found for s in got]  # type: ignore[attr-defined]
    print(
        f"1-byte chunks through HAProxy: answered {sorted(set(statuses))} to {len(statuses)}"
        f" bodies; HAProxy CPU {haproxy_cpu:.1f} s"
    )
    judge(watch, base, "1-byte chunks through HAProxy")
    assert statuses, "no body was sent"


# The rate tests' settings, one process for both: 127.0.0.1 (HAProxy's address) a trusted
# proxy, the addresses of the clients sent directly not
RATE = {
    "API_REQUESTS_PER_SECOND_PER_ADDRESS": "10",
    "API_REQUEST_BURST_PER_ADDRESS": "20",
    "API_TRUSTED_PROXIES": "127.0.0.1",
}


async def test_requests_from_one_address_are_held_to_its_rate(serve: Serve) -> None:
    """API_REQUESTS_PER_SECOND_PER_ADDRESS=10 in bursts of 20 (RATE): one address asking as fast
    as it can for 4 s on a kept-alive connection (a 404 path) gets about 20 + 4 x 10 answers,
    the rest 429 with Retry-After, each counted in /metrics; another address asking meanwhile,
    and /health, are answered as before."""
    async with serve(**RATE) as served:
        throttled = await asyncio.to_thread(_throttled, served.port)
        base = served.baseline()
        watch = Watch(served.pid, served.port, every_s=0.2)  # 5 a second, under the rate
        with watch.running():
            flood, other = await asyncio.gather(
                asyncio.to_thread(requests_from, served.port, ATTACKERS[0], "/no/such", 4),
                asyncio.to_thread(_paced, served.port, ATTACKERS[1], 4),
            )
        now = await asyncio.to_thread(_throttled, served.port)
    answered = [s for s, _ in flood if s != 429]
    refused = [after for s, after in flood if s == 429]
    print(
        f"one address flooding: {len(answered)} answered, {len(refused)} refused 429 of"
        f" {len(flood)} in 4 s; the other address: {sorted(set(other))}"
    )
    judge(watch, base, "one address flooding at its rate")
    assert set(answered) == {404}, sorted(set(answered))
    assert 20 <= len(answered) <= 20 + 4 * 10 + 5, len(answered)
    assert refused and all(after is not None and int(after) >= 1 for after in refused)
    assert set(other) == {404}, other
    counted = {series: n - throttled.get(series, 0) for series, n in now.items()}
    assert len(refused) in counted.values(), counted


def _throttled(port: int) -> dict[str, float]:
    """The mailprobe_api_throttled series of /metrics (name and labels): their values."""
    lines = fetch(port, "/metrics").decode().splitlines()
    return {
        series: float(value)
        for series, _, value in (
            line.rpartition(" ") for line in lines if line.startswith("mailprobe_api_throttled")
        )
    }


def _paced(port: int, source: str, seconds: float) -> list[int]:
    """GET a 404 path from `source` 4 times a second, each on a fresh connection."""
    statuses = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        statuses.append(get(port, "/no/such", source))
        time.sleep(0.25)
    return statuses


async def test_behind_the_shipped_haproxy_each_client_has_its_own_rate(
    serve: Serve, tmp_path: Path
) -> None:
    """A controller trusting the shipped HAProxy (RATE: 10/s, burst 20): one client flooding
    through it for 3 s is refused 429 past its bound, while another client through the same
    HAProxy, 4 requests a second, is answered every time (each counted by the address HAProxy
    forwards, not HAProxy's own; addresses whose rate the direct test did not spend)."""
    async with serve(**RATE) as served, _haproxy(served.port, tmp_path) as (port, _):
        flood, other = await asyncio.gather(
            asyncio.to_thread(requests_from, port, ATTACKERS[2], "/no/such", 3),
            asyncio.to_thread(_paced, port, ATTACKERS[3], 3),
        )
    answered = [s for s, _ in flood if s != 429]
    print(f"through HAProxy: the flood {len(answered)} of {len(flood)} answered; other {other}")
    assert set(answered) == {404} and 20 <= len(answered) <= 20 + 3 * 10 + 5, len(answered)
    assert set(other) == {404}, other
