"""Reports from the world's senders (issue 64): what parsing costs, on the controller's own code
(controller/reports/sandbox.py: a process per report, forked from the fork server, at most two
at once), with the controller's process watched as in tests/reports/watching.py.

- Everyday reports as Google, Microsoft and Yahoo send them (tests/reports/samples.py:
  synthetic, after their shape), `EVERYDAY` of each queued at once: reports per second through
  the worker, and inline (the parser alone, for comparison).
- One Google-shaped DMARC report of 100,000 records (~60 MB of XML, ~1.4 MB zipped): seconds,
  the worker's peak memory (its ceiling is `Limits.memory_mb`).
- Every attack of tests/reports/hostile.py: each refused for its reason, its seconds and the
  worker's peak memory; then all of them `ROUNDS` times over, queued at once, watched.
- A `python -m controller serve` (the API role, embedded PostgreSQL and NATS) while five
  loopback addresses each post every TLS attack and a good report, over and over, at the rate
  limit (`POSTS` of the minute's 60 each): the serving process's peak RSS (VmHWM, from
  /proc/<pid>) and its loop's lag as the latency of `/health` asked every 10 ms (and the same
  with nothing posted, for how busy the machine is).

Targets, for each part: the controller's peak RSS at most `RSS_MB` above what it held before,
its event loop's lag p99 under `LAG_MS` (a 10 ms timer); everyday reports at least
`TARGET_PER_S` a second; the 100,000-record report parsed (not refused). The figures vary with
how busy the machine is: the worst loop gap is printed too.
"""

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from bench.reports_child import parse_peak
from controller.db.pool import connect
from controller.reports.parse import Rejected, parse
from controller.reports.sandbox import SANDBOX, Limits
from testkit.common import Stack, machine, percentile, verdict
from testkit.reports import hostile, samples
from testkit.reports.watching import Watched, watch

EVERYDAY = 40
ROUNDS = 3
ADDRESSES = [f"127.0.0.{n}" for n in range(2, 7)]
POSTS = 56  # each address's, of the 60 a minute REPORTS_POSTS_PER_MINUTE allows
RSS_MB = 100.0
LAG_MS = 100.0
TARGET_PER_S = 20.0
DOMAIN = "example.com"
T = TypeVar("T")


async def _watched(work: Awaitable[T]) -> tuple[T, Watched, float]:
    started = time.monotonic()
    async with watch() as watched:
        result = await work
    return result, watched, time.monotonic() - started


def _bounded(watched: Watched) -> bool:
    return watched.growth_mb <= RSS_MB and watched.lag_ms(0.99) < LAG_MS


async def _everyday() -> bool:
    everyday = samples.everyday(DOMAIN)
    queued = [s for s in everyday for _ in range(EVERYDAY)]
    now = datetime.now(UTC)
    work = asyncio.gather(*(SANDBOX.parse(s.data, now) for s in queued))
    parsed, watched, took = await _watched(work)
    rate = len(parsed) / took
    assert all(len(p.rows) >= 1 for p in parsed)
    started = time.monotonic()
    for s in queued:
        parse(s.data, now)
    inline = len(queued) / (time.monotonic() - started)
    print(f"  everyday reports ({len(everyday)} providers' shapes x {EVERYDAY}):", flush=True)
    for s in everyday:
        _, rows, peak = await SANDBOX.run(parse_peak, s.data)
        print(
            f"    {s.provider:18} {len(s.data):>6} bytes {rows:>3} rows, worker {peak // 1024} MB"
        )
    ok = _bounded(watched) and rate >= TARGET_PER_S
    print(
        f"  {rate:.0f} reports/s through the worker (target >= {TARGET_PER_S:.0f}),"
        f" {inline:.0f}/s inline; controller {watched.said()}  {verdict(ok)}",
        flush=True,
    )
    return ok


async def _google_100k() -> bool:
    data = samples.google_dmarc(DOMAIN, 100_000)
    report, watched, took = await _watched(SANDBOX.parse(data, datetime.now(UTC)))
    _, rows, peak = await SANDBOX.run(parse_peak, data)
    ok = _bounded(watched) and len(report.rows) == 100_000 and rows == 100_000
    print(
        f"  Google DMARC of 100,000 records ({len(data) / 1e6:.1f} MB zipped): {took:.1f} s,"
        f" {100_000 / took:,.0f} rows/s; worker peak {peak // 1024} MB (ceiling"
        f" {Limits().memory_mb} MB); controller {watched.said()}  {verdict(ok)}",
        flush=True,
    )
    return ok


async def _refused(data: bytes) -> str:
    try:
        await SANDBOX.parse(data, datetime.now(UTC))
    except Rejected as exc:
        return exc.reason
    return "parsed"


async def _hostile() -> bool:
    tables = (("TLS", hostile.TLS), ("DMARC", hostile.DMARC))
    attacks = {f"{kind} {name}": pair for kind, table in tables for name, pair in table.items()}
    bodies = {name: make() for name, (make, _) in attacks.items()}
    ok = True
    print("  hostile reports, one at a time:", flush=True)
    for name, (_, reason) in attacks.items():
        started = time.monotonic()
        said, _, peak = await SANDBOX.run(parse_peak, bodies[name])
        good = said == reason
        ok = ok and good
        print(
            f"    {name:34} {len(bodies[name]):>9} bytes -> {said:11}"
            f" {time.monotonic() - started:5.2f} s, worker {peak // 1024:>3} MB  {verdict(good)}",
            flush=True,
        )
    runs = [_refused(bodies[name]) for name in attacks for _ in range(ROUNDS)]
    reasons, watched, took = await _watched(asyncio.gather(*runs))
    expected = [reason for _, reason in attacks.values() for _ in range(ROUNDS)]
    good = reasons == expected and _bounded(watched)
    print(
        f"  all of them {ROUNDS} times, queued at once ({len(runs)} in {took:.0f} s):"
        f" controller {watched.said()}  {verdict(good)}",
        flush=True,
    )
    return ok and good


async def _idle_loop() -> None:
    """The loop's lag with nothing to do: how busy the machine is."""
    async with watch() as watched:
        await asyncio.sleep(5)
    print(
        f"  idle, for comparison: loop lag p99 {watched.lag_ms(0.99):.1f} ms"
        f" (max {watched.lag_ms(1.0):.1f} ms)",
        flush=True,
    )


def _kb(pid: int, name: str) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise LookupError(name)


async def _health_latencies(url: str, done: asyncio.Event) -> list[float]:
    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not done.is_set():
            started = time.monotonic()
            await client.get("/health")
            out.append(time.monotonic() - started)
            await asyncio.sleep(0.01)
    return out


async def _idle(url: str, seconds: float) -> float:
    """/health's p99 latency (ms) with nothing posted: what the machine's load costs alone."""
    done = asyncio.Event()
    health = asyncio.create_task(_health_latencies(url, done))
    await asyncio.sleep(seconds)
    done.set()
    return percentile([1000 * x for x in await health], 99)


async def _posting(url: str, pid: int, path: str, files: list[str]) -> tuple[bool, str]:
    """Five addresses posting `files` at once to the served API; (as answered, figures)."""
    idle = await _idle(url, 10.0)
    with open(f"/proc/{pid}/clear_refs", "w") as f:  # noqa: ASYNC230
        f.write("5")
    before = _kb(pid, "VmRSS")
    done = asyncio.Event()
    health = asyncio.create_task(_health_latencies(url, done))
    started = time.monotonic()
    posting = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reports.posting",
        url + path,
        "-",
        ",".join(ADDRESSES),
        *files,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await posting.communicate()
    took = time.monotonic() - started
    done.set()
    lags = await health
    growth = (_kb(pid, "VmHWM") - before) / 1024
    after = (_kb(pid, "VmRSS") - before) / 1024
    answered = json.loads(out) if posting.returncode == 0 else {}
    statuses = [s for each in answered.values() for s in each]
    refused, stored = statuses.count(400), statuses.count(200)
    p99 = percentile([1000 * x for x in lags], 99)
    ok = (
        len(statuses) == len(ADDRESSES) * len(files)
        and refused + stored == len(statuses)
        and growth <= RSS_MB
        and p99 < LAG_MS
    )
    said = (
        f"{len(statuses)} POSTs in {took:.0f} s ({refused} refused, {stored} stored or"
        f" duplicates); serving process peak RSS +{growth:.1f} MB (+{after:.1f} MB after);"
        f" /health p99 {p99:.1f} ms"
        f" (max {1000 * max(lags, default=0):.1f} ms, {len(lags)} asked; {idle:.1f} ms with"
        f" nothing posted)"
    )
    return ok, said


async def _seeded(stack: Stack, domain: str) -> tuple[str, str]:
    """(a token of the bench's organization, its monitor's domain)."""
    seeded = await asyncio.to_thread(stack.seed, 1)
    conn = await connect(stack.database_url)
    try:
        await conn.execute(
            "UPDATE monitors SET mail_domain = $1 WHERE public_id = $2::uuid",
            domain,
            seeded.monitor_ids[0],
        )
    finally:
        await conn.close()
    return seeded.token, domain


async def _served() -> bool:
    stack = Stack()
    try:
        token, domain = await _seeded(stack, "bench-reports.example")
        url = await asyncio.to_thread(stack.serve, PUBLIC_URL="http://bench.example")
        assert stack.api is not None
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            r = await client.get(
                "/api/report-domains", headers={"Authorization": f"Bearer {token}"}
            )
        [shown] = [d for d in r.json() if d["domain"] == domain]
        path = str(shown["tlsRptHttps"]).removeprefix("http://bench.example")
        good = samples.google_tls(domain, 3)
        bodies = [make() for make, _ in hostile.TLS.values()] + [good]
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for n in range(POSTS):
                files.append(os.path.join(tmp, f"{n}.gz"))
                with open(files[-1], "wb") as f:  # noqa: ASYNC230
                    f.write(bodies[n % len(bodies)])
            ok, said = await _posting(url, stack.api.pid, path, files)
    finally:
        stack.close()
    print(
        f"  python -m controller serve, {len(ADDRESSES)} addresses x {POSTS} POSTs of every TLS"
        f" attack and a good report:\n    {said}  {verdict(ok)}",
        flush=True,
    )
    return ok


async def _all() -> bool:
    print(f"reports: parsing in the worker ({machine()})", flush=True)
    await _idle_loop()
    results = [await _everyday(), await _google_100k(), await _hostile(), await _served()]
    return all(results)


def run() -> bool:
    return asyncio.run(_all())
