"""`make bench scale --profile`: where a controller role's CPU goes, by the product's part.

py-spy samples the thread holding the GIL of each controller process over the measured window
(`record --gil --native --format raw`: one line per distinct stack, frames outermost first, and
its count), so that threads waiting (the loop's polling, an idle executor) take no samples.
Native frames need py-spy to pause the process for each sample: a profiled run's CPU figures
are its own, not for comparing with an unprofiled run's. A
sample goes to the part of the innermost frame in the controller's own code (asyncpg called by
the results store counts as result writes; the entry point `controller/__main__.py` is not a
part); a sample with no such frame is the event loop and the libraries it runs by themselves
(NATS's reader, asyncpg's protocol, uvloop's callbacks), told apart by the innermost frame's
library. PARTS and LIBRARIES are the maps.
"""

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = "py-spy"
RATE = 100  # samples a second per process
# (path fragment of a frame's file, the part it is): the first that matches wins.
PARTS = (
    ("controller/scheduling/admission", "scheduler: admission"),
    ("controller/scheduling/preemption", "scheduler: preemption"),
    ("controller/fleet/", "heartbeats: live agents, their load and tenants"),
    ("controller/scheduling/", "scheduler: due rounds, plans, publishing"),
    ("controller/jobs/", "job ids"),
    ("controller/ingest/packer", "packer"),
    ("controller/ingest/", "result writes (ingester, results store)"),
    ("controller/sidechecks/", "result writes (ingester, results store)"),
    ("controller/alerting/", "alerter: evaluations"),
    ("controller/posture/", "alerter: posture (facts, verdicts)"),
    ("controller/notify/", "alerter: notices"),
    ("controller/observability/", "metrics"),
    ("controller/web/", "API"),
    ("controller/", "controller: other"),
)
ENTRY = "controller/__main__.py"
LOOP = "loop and libraries on their own"
# What a frame's path names, for the samples outside the controller's code.
LIBRARIES = ("asyncpg", "uvloop", "nats", "msgspec", "structlog", "litestar", "asyncio")
_FRAME = re.compile(r"\(([^()]+?)(?::\d+)?\)$")


def available() -> str | None:
    """The py-spy executable (on PATH or beside this Python's), or None."""
    beside = Path(sys.executable).parent / PY_SPY
    return shutil.which(PY_SPY) or (str(beside) if beside.exists() else None)


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for `seconds` into `out` (raw)."""
    exe = available()
    assert exe is not None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(RATE),
            "--gil",
            "--native",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def part_of(stack: str) -> str:
    """The part a raw stack (frames `func (file:line)`, outermost first, `;`-separated) goes to."""
    frames = stack.split(";")
    for frame in reversed(frames):
        found = _FRAME.search(frame)
        if found is None or ENTRY in found.group(1):
            continue
        for fragment, part in PARTS:
            if fragment in found.group(1):
                return part
    for frame in reversed(frames):
        for library in LIBRARIES:
            if f"/{library}/" in frame or f"{library}/" in frame.split("(")[-1][:40]:
                return f"{LOOP}: {library}"
    return f"{LOOP}: interpreter and C"


def shares(raw: str) -> tuple[int, dict[str, float]]:
    """(samples, share of them by part, largest first) of a raw py-spy profile."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[part_of(stack)] += int(n)
    total = sum(counts.values())
    return total, {k: v / total for k, v in counts.most_common()} if total else {}
