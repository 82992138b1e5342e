"""Reports from the world's senders (issue 64): what parsing costs, on the controller's own code
(controller/reports/sandbox.py: a process per report, forked from the fork server, at most two
at once), with the controller's process watched as in tests/reports/watching.py.

- Everyday reports as Google, Microsoft and Yahoo send them (tests/reports/samples.py:
  synthetic, after their shape), `EVERYDAY` of each queued at once: reports per second through
  the worker, and inline (the parser alone, for comparison).
- One Google-shaped DMARC report of 100,000 records (~60 MB of XML, ~1.4 MB zipped): seconds,
  the worker's peak memory (its ceiling is `Limits.memory_mb`).
- Every attack of tests/reports/hostile.py, `ROUNDS` times over, five at a time: each refused
  for its reason, the worker's peak memory.

Targets, for each part: the controller's peak RSS at most `RSS_MB` above what it held before,
its event loop's lag p99 under `LAG_MS` (a 10 ms timer); everyday reports at least
`TARGET_PER_S` a second; the 100,000-record report parsed (not refused). The figures vary with
how busy the machine is: the worst loop gap is printed too.
"""

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

from bench.common import machine, verdict
from bench.reports_child import parse_peak
from controller.reports.parse import Rejected, parse
from controller.reports.sandbox import SANDBOX, Limits
from tests.reports import hostile, samples
from tests.reports.watching import Watched, watch

EVERYDAY = 40
ROUNDS = 3
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
    attacks = {
        f"{kind} {name}": pair
        for kind, table in (("TLS", hostile.TLS), ("DMARC", hostile.DMARC))
        for name, pair in table.items()
    }
    bodies = {name: make() for name, (make, _) in attacks.items()}
    ok = True
    print(f"  hostile reports ({ROUNDS} rounds of each, queued at once):", flush=True)
    for name, (_, reason) in attacks.items():
        said, _, peak = await SANDBOX.run(parse_peak, bodies[name])
        runs = [_refused(bodies[name]) for _ in range(ROUNDS)]
        reasons, watched, took = await _watched(asyncio.gather(*runs))
        good = set(reasons) == {reason} == {said} and _bounded(watched)
        ok = ok and good
        print(
            f"    {name:34} {len(bodies[name]):>9} bytes -> {reason:11}"
            f" {took / ROUNDS:5.2f} s each, worker {peak // 1024:>3} MB;"
            f" controller {watched.said()}  {verdict(good)}",
            flush=True,
        )
    return ok


async def _all() -> bool:
    print(f"reports: parsing in the worker ({machine()})", flush=True)
    results = [await _everyday(), await _google_100k(), await _hostile()]
    return all(results)


def run() -> bool:
    return asyncio.run(_all())
