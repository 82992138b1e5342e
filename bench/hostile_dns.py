"""The agent's DNS side checks against a hostile DNS server (issue 65's bounds): mail DNS, reverse
DNS, readiness and blocklists, built from the agent's settings as an agent builds them, asked of a
loopback resolver in a process of its own whose every answer is as large as DNS carries (over
TCP: a 64 KiB TXT, thousands of MX, A and PTR records; the lists answer thousands of A records
and a 64 KiB TXT; UDP answers truncated), side by side with a truthful resolver, in one process,
alternating runs. Each run is `ROUNDS` rounds at once, each of its own organization (so the
per-organization bound holds none back); measured: the agent process's RSS growth at its peak
(sampled every 5 ms) and the event loop's lag (a 5 ms ticker's overshoot), and the largest
facts a round sends. The machine's load is printed beside. On the controller's side, a rogue
agent's results (each side check's facts as large as a 1 MiB message carries) decoded and cut to
their bounds as the ingester does.

Target: the hostile runs' facts within 64 KiB (each side check's own bound), a rogue agent's
cut to `KEPT_MAX`, the hostile runs' peak RSS growth at most `RSS_RATIO_MAX` times the truthful
runs' plus `RSS_SLACK_MB`, their loop lag p99 at most `LAG_RATIO_MAX` times the truthful runs'
plus `LAG_SLACK_MS`: a hostile server costs the agent what parsing 64 KiB answers costs, never
unbounded growth nor a stall.
"""

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import msgspec

from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks import SIDE_CHECKS, Round
from controller.ingest.store import decode_result
from controller.sidechecks.blocklists.rules import DEFAULT_LISTS, Fresh, ask
from controller.sidechecks.registry import WIRED
from shared.clock import WALL
from shared.sidechecks import blocklists, mail_dns, readiness, reverse_dns
from testkit.common import machine, percentile
from testkit.peers.dns import CANARY_RECORDS, DnsPeer
from testkit.peers.jobs import make_job, up_result

ROUNDS = 40
RUNS = 3  # of each, alternating
BUDGET_S = 5.0
DOMAIN = "bench-customer.com"
HOST = "mx.bench-customer.com"
ADDRESS = "93.184.216.34"  # a query name only: answered by the loopback resolver
RSS_RATIO_MAX, RSS_SLACK_MB = 3.0, 64.0
LAG_RATIO_MAX, LAG_SLACK_MS = 3.0, 100.0
# What a rogue agent's facts may keep after the ingester's bound, per side check (the lists':
# 512 answers of 8 A records, as the bound allows).
KEPT_MAX = {"mail_dns": 16 * 1024, "reverse_dns": 16 * 1024, "readiness": 64 * 1024}
KEPT_MAX["blocklists"] = 128 * 1024
TRUTH = {
    (DOMAIN, "MX"): [f"10 {HOST}."],
    (DOMAIN, "TXT"): ['"v=spf1 mx -all"'],
    (f"_dmarc.{DOMAIN}", "TXT"): ['"v=DMARC1; p=reject; rua=mailto:d@bench-customer.com"'],
    (HOST, "A"): [ADDRESS],
    ("34.216.184.93.in-addr.arpa", "PTR"): [f"{HOST}."],
}


class Hostile(DnsPeer):
    """Every answer as large as a TCP DNS message carries, of the type asked (the canaries
    answered as they must be, so every lookup is made); over UDP only the truncation."""

    def answer(self, wire: bytes, tcp: bool = False) -> bytes | None:
        query = dns.message.from_wire(wire)
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        if (name, dns.rdatatype.to_text(q.rdtype)) in CANARY_RECORDS or name.endswith(".invalid"):
            return super().answer(wire, tcp)
        response = dns.message.make_response(query)
        if not tcp:
            response.flags |= dns.flags.TC
            return response.to_wire()
        texts = _huge(q.rdtype, name)
        response.answer.append(dns.rrset.from_text_list(q.name, 60, "IN", q.rdtype, texts))
        try:
            return response.to_wire(max_size=65535)
        except dns.exception.TooBig:
            response.answer[0] = dns.rrset.from_text_list(
                q.name, 60, "IN", q.rdtype, texts[: len(texts) // 2]
            )
            return response.to_wire(max_size=65535)


def _huge(rdtype: int, name: str) -> list[str]:
    if rdtype == dns.rdatatype.TXT:
        chunk = '"' + "v=spf1 include:x" + "a" * 230 + '"'
        return [" ".join([chunk] * 60)] * 4  # about 60 KiB
    if rdtype == dns.rdatatype.MX:
        return [f"{n} mx{n}.{DOMAIN}." for n in range(2500)]
    if rdtype == dns.rdatatype.PTR:
        return [f"ptr{n}.{DOMAIN}." for n in range(2000)]
    if rdtype == dns.rdatatype.AAAA:
        return [f"2606:2800:220:1::{n:x}" for n in range(2000)]
    if rdtype == dns.rdatatype.A:
        base = "127.0.0" if name.count(".") > 5 else "93.184"  # a list's answer, or a host's
        return [
            f"{base}.{n % 250 + 2}" if base == "127.0.0" else f"{base}.{n // 250}.{n % 250 + 1}"
            for n in range(4000)
        ]
    return []


def _serve(hostile: bool, port: "multiprocessing.Queue[int]") -> None:
    """Serve until terminated."""

    async def main() -> None:
        peer = Hostile(TRUTH) if hostile else DnsPeer(TRUTH)
        async with peer:
            port.put(peer.port)
            await asyncio.Event().wait()

    asyncio.run(main())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Watch:
    """The loop's lag (a 5 ms ticker's overshoot) and the RSS at its peak, while running."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.peak = self.start = _rss_mb()
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            self.lags.append((loop.time() - before - 0.005) * 1000)
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self) -> "Watch":
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _round(n: int) -> Round:
    job = make_job("smtp", 25)
    job = msgspec.structs.replace(job, hostname=HOST, tenant=f"org-{n}")
    result = up_result(job, address=ADDRESS)
    return Round(job=job, result=result, port=25, resolver=None)


ASKS: dict[str, Callable[[], object]] = {
    mail_dns.WIRE.name: lambda: mail_dns.WIRE.ask(domain=DOMAIN),
    reverse_dns.WIRE.name: lambda: reverse_dns.WIRE.ask(),
    readiness.WIRE.name: lambda: readiness.WIRE.ask(domain=DOMAIN, selectors=["s1", "s2"]),
    blocklists.WIRE.name: lambda: ask(DEFAULT_LISTS, DOMAIN, Fresh()),
}


Run = tuple[float, list[float], dict[str, int], float]


async def _run(resolver: str) -> Run:
    """RSS growth at the peak (MB), the loop's lags (ms), the largest facts per side check
    (bytes), wall s."""
    settings = SideCheckSettings(agent_dns_resolver=resolver, agent_dns_probes_per_tenant=8)
    runners = {name: SIDE_CHECKS[name].build(settings, TargetSettings(), WALL) for name in ASKS}
    largest = dict.fromkeys(ASKS, 0)
    started = time.perf_counter()
    with Watch() as w:
        rounds = [_round(n) for n in range(ROUNDS)]
        asked = [(name, runners[name](ASKS[name](), r)) for r in rounds for name in ASKS]
        results = await asyncio.gather(*(run for _, run in asked), return_exceptions=True)
    for (name, _), got in zip(asked, results, strict=True):
        if isinstance(got, BaseException):
            raise got
        largest[name] = max(largest[name], len(msgspec.json.encode(got)))
    return w.peak - w.start, w.lags, largest, time.perf_counter() - started


async def _measure() -> dict[bool, list[Run]]:
    ctx = multiprocessing.get_context("spawn")
    out: dict[bool, list[Run]] = {False: [], True: []}
    servers = {}
    for hostile in (False, True):
        port: multiprocessing.Queue[int] = ctx.Queue()
        proc = ctx.Process(target=_serve, args=(hostile, port), daemon=True)
        proc.start()
        servers[hostile] = (proc, f"127.0.0.1:{port.get(timeout=30)}")
    try:
        for _ in range(RUNS):
            for hostile in (False, True):
                out[hostile].append(await _run(servers[hostile][1]))
    finally:
        # Ended outright: the server's sessions still open (clients that gave up) need no
        # goodbye, and an asyncio teardown would log each one's cancellation.
        for proc, _ in servers.values():
            proc.terminate()
            proc.join(timeout=10)
    return out


def _rogue(name: str) -> object:
    """A side check's facts as large as a 1 MiB result carries, as a rogue agent sends them."""
    long = "a" * 250
    if name == mail_dns.WIRE.name:
        return {"domain": DOMAIN, "spf": [long] * 1500, "mx": [long] * 1500}
    if name == reverse_dns.WIRE.name:
        checks = [{"address": ADDRESS, "names": [long] * 100} for _ in range(30)]
        return {"addresses": checks}
    if name == readiness.WIRE.name:
        return {"domain": DOMAIN, "mx": [long] * 3000}
    answers = [{"zone": "zen.spamhaus.org", "name": ADDRESS, "a": ["127.0.0.2"] * 8}] * 6000
    return {"answers": answers}


def _controller() -> list[tuple[str, int, int, float]]:
    """Each side check's rogue result decoded and cut to its bound as the ingester does
    (controller/ingest: decode, then `bound`): bytes in, bytes kept, ms each."""
    out = []
    for name in ASKS:
        check = WIRED[name]
        assert check.wire is not None and check.bound is not None
        job = make_job("smtp", 25)
        result = up_result(job, side_checks={name: _rogue(name)})
        data = msgspec.json.encode(result)
        started = time.perf_counter()
        facts = check.wire.facts_of(decode_result(data).side_checks)
        kept = len(msgspec.json.encode(check.bound(facts)))
        out.append((name, len(data), kept, (time.perf_counter() - started) * 1000))
    return out


def run() -> bool:
    print(
        f"hostile DNS: {ROUNDS} rounds at once of mail DNS, reverse DNS, readiness and"
        f" blocklists ({len(DEFAULT_LISTS)} lists), each its own organization, {RUNS} runs"
        f" each way alternating ({machine()}; load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    got = asyncio.run(_measure())
    figures = {}
    for hostile, runs in got.items():
        rss = max(r[0] for r in runs)
        lags = sorted(lag for r in runs for lag in r[1])
        p99, worst = percentile(lags, 99), lags[-1]
        largest = {name: max(r[2][name] for r in runs) for name in ASKS}
        wall = max(r[3] for r in runs)
        figures[hostile] = (rss, p99, max(largest.values()))
        sizes = ", ".join(f"{name} {size:,}" for name, size in largest.items())
        print(
            f"  {'hostile ' if hostile else 'truthful'}: peak RSS growth {rss:6.1f} MB,"
            f" loop lag p99 {p99:6.1f} ms (max {worst:.0f}), slowest run {wall:.1f} s;"
            f" largest facts (B): {sizes}",
            flush=True,
        )
    rogue = _controller()
    for name, sent, kept, ms in rogue:
        print(
            f"  controller, a rogue agent's {name}: {sent:,} B sent, {kept:,} B kept after its"
            f" bound, {ms:.0f} ms to decode and cut",
            flush=True,
        )
    (rss0, lag0, _), (rss1, lag1, biggest) = figures[False], figures[True]
    ok = (
        rss1 <= RSS_RATIO_MAX * rss0 + RSS_SLACK_MB
        and lag1 <= LAG_RATIO_MAX * lag0 + LAG_SLACK_MS
        and biggest <= 64 * 1024
        and all(sent <= 1024 * 1024 and kept <= KEPT_MAX[name] for name, sent, kept, _ in rogue)
    )
    print(
        f"  hostile/truthful: RSS growth {rss1:.1f}/{rss0:.1f} MB, lag p99 {lag1:.1f}/{lag0:.1f}"
        f" ms (load now {os.getloadavg()[0]:.1f}) -> {'ok' if ok else 'MISSED'}",
        flush=True,
    )
    return ok


if __name__ == "__main__":
    run()
