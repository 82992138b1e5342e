"""Reports parsed off the event loop, each in a process of its own with a memory and a time
ceiling, so a report never stalls the loop the scheduler, ingester and alerter share, and never
costs the controller's process more than its bytes.

A process per report, forked from the standard library's fork server (started once, with the
parser imported; a fork costs ~15 ms), and gone when its report is: a bomb or a flood cannot
leave memory behind, nor make another report fail with it. At most `PARSERS` at once (a thread
each waits for its process; the others queue, taken in turn by organization,
controller/reports/turns.py). In each: `RLIMIT_AS` of `memory_mb` (a
`MemoryError` past it), `RLIMIT_CPU` of `cpu_s` (the kernel's SIGXCPU past it), no core
file, and a nice of `NICE`, so the controller's loop comes first when both want a core. One
still running after `wall_s` is killed, and so is one whose caller was cancelled. A report
being parsed when the controller stops is not waited for: its process is a daemon.
What became of it is the report or one `Rejected`: its own refusal, `parser_memory`,
`parser_time` or `parser_died` (killed by another signal or exited without an answer).
"""

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TypeVar, cast

import msgspec
import structlog

from controller.reports.parse import Kind, Report, Row, parse
from controller.reports.rejected import Rejected
from controller.reports.turns import Turns
from shared.guards import BrokenInvariant

log = structlog.get_logger(__name__)

PARSERS = 2
NICE = 10  # the parsers yield the CPU to the controller's loop when both want it
T = TypeVar("T")

_context = multiprocessing.get_context("forkserver")
# Imported once, in the fork server: "__main__" (so that no fork imports it again, as
# multiprocessing.spawn would), the parser, and the mail reader (a message's MIME).
_context.set_forkserver_preload(["__main__", __name__, "controller.reports.mail"])


@dataclass(frozen=True, slots=True)
class Limits:
    memory_mb: int = 512  # address space: the parser's own ~40 MB included
    cpu_s: int = 20
    wall_s: float = 60.0


class Sandbox:
    """Runs a function of this process's modules in a bounded process of its own."""

    def __init__(self, limits: Limits = Limits(), parsers: int = PARSERS) -> None:
        self.limits = limits
        self._threads = ThreadPoolExecutor(parsers, thread_name_prefix="report-parser")
        self.turns = Turns(parsers)

    async def parse(
        self, data: bytes, now: datetime, wanted: Kind | None = None, *, organization_id: int = 0
    ) -> Report:
        """controller.reports.parse.parse, in a process of its own, in the organization's turn."""
        packed = await self.run(_parsed, data, now, wanted, organization_id=organization_id)
        return await asyncio.to_thread(_unpacked, packed)

    async def run(self, fn: Callable[..., T], *args: object, organization_id: int = 0) -> T:
        """`fn(*args)`'s result, or the Rejected it raised or its process's end caused, run when
        a parser is free and the organization's turn has come (controller/reports/turns.py)."""
        async with self.turns.turn(organization_id):
            return await self._run(fn, *args)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        receiving, sending = _context.Pipe(duplex=False)
        process = _context.Process(target=_child, args=(sending, self.limits, fn, args))
        process.daemon = True
        abandoned = threading.Event()
        job = self._threads.submit(self._outcome, process, receiving, sending, abandoned)
        try:
            kind, value = await asyncio.shield(asyncio.wrap_future(job))
        except asyncio.CancelledError:
            abandoned.set()
            if job.cancel():  # never begun
                receiving.close()
                sending.close()
                raise
            with contextlib.suppress(ValueError):  # under way: stopped, and reaped before we go
                if process.is_alive():
                    process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(job)
            raise
        finally:
            # The job holds the answer, and a refusal's traceback holds this frame: no cycle
            # through them (nor through `value` below), which would keep the report's bytes
            # until the collector's next full pass.
            del job
        if kind == "rejected":
            if not isinstance(value, Rejected):
                raise BrokenInvariant("sandbox.Sandbox._run: expected isinstance(value, Rejected)")
            try:
                raise value
            finally:
                del value
        return cast(T, value)

    def _outcome(
        self,
        process: BaseProcess,
        receiving: Connection,
        sending: Connection,
        abandoned: threading.Event,
    ) -> tuple[str, object]:
        """In a thread: start the process, wait for its answer or its end, and reap it."""
        try:
            if abandoned.is_set():
                return "rejected", Rejected("parser_died", "its caller went away")
            return self._answer(process, receiving, sending, abandoned)
        finally:
            with contextlib.suppress(ValueError, AssertionError):  # closed, or never started
                if process.is_alive():
                    process.kill()
                process.join(5)
            receiving.close()
            sending.close()

    def _answer(
        self,
        process: BaseProcess,
        receiving: Connection,
        sending: Connection,
        abandoned: threading.Event,
    ) -> tuple[str, object]:
        try:
            process.start()
        except OSError as exc:  # no process to be had (EAGAIN, ENOMEM): this report waits none
            log.warning("report parser not started", error=str(exc))
            return "rejected", Rejected("parser_died", f"no parsing process could start ({exc})")
        sending.close()
        if abandoned.is_set():
            return "rejected", Rejected("parser_died", "its caller went away")
        if not receiving.poll(self.limits.wall_s):
            return "rejected", Rejected(
                "parser_time", f"not parsed within {self.limits.wall_s:g} s"
            )
        try:
            answer: tuple[str, object] = receiving.recv()
        except (EOFError, OSError):
            process.join(5)
            return "rejected", self._died(process.exitcode)
        return answer

    def _died(self, code: int | None) -> Rejected:
        if code == -signal.SIGXCPU:
            return Rejected("parser_time", f"more than {self.limits.cpu_s} s of CPU to parse")
        log.warning("report parser died", exitcode=code)
        return Rejected("parser_died", f"the parser's process ended without an answer ({code})")


# A report crosses from the parsing process as MessagePack, its rows in batches: each batch
# decoded on its own, so the thread decoding them lets the event loop run between batches.
BATCH = 5_000
_Packed = tuple[bytes, list[bytes]]
_head_decoder = msgspec.msgpack.Decoder(Report)
_rows_decoder = msgspec.msgpack.Decoder(list[tuple[str, Row]])


def _parsed(data: bytes, now: datetime, wanted: Kind | None) -> _Packed:
    report = parse(data, now, wanted)
    rows = report.rows
    head = msgspec.msgpack.encode(dataclasses.replace(report, rows=()))
    return head, [msgspec.msgpack.encode(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]


def _unpacked(packed: _Packed) -> Report:
    head, batches = packed
    rows: list[tuple[str, Row]] = []
    for batch in batches:
        rows += _rows_decoder.decode(batch)
    return dataclasses.replace(_head_decoder.decode(head), rows=tuple(rows))


def _child(
    sending: Connection, limits: Limits, fn: Callable[..., object], args: tuple[object, ...]
) -> None:
    """The parsing process: its ceilings set before anything is read."""
    ceiling = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(NICE)
    answer: tuple[str, object]
    try:
        answer = ("ok", fn(*args))
    except Rejected as exc:
        answer = ("rejected", exc)
    except MemoryError:
        answer = ("rejected", _too_much(limits))
    except RecursionError:
        answer = ("rejected", Rejected("too_deep", "nested deeper than its parser goes"))
    try:
        sending.send(answer)
    except MemoryError:
        sending.send(("rejected", _too_much(limits)))


def _too_much(limits: Limits) -> Rejected:
    return Rejected("parser_memory", f"more than {limits.memory_mb} MB to parse")


SANDBOX = Sandbox()
