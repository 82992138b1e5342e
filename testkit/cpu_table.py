"""Where the suite's CPU goes: a pytest plugin, on when TEST_CPU_TABLE names a file, that writes
one row per test file with the CPU-seconds it cost.

A file's cost is counted between the start of its first test and the end of its last (its module
fixtures included): the worker's own CPU (`getrusage(RUSAGE_SELF)`), the processes it started
and reaped (`RUSAGE_CHILDREN`), and from /proc the live processes it started, the daemonized
ones too (PostgreSQL's postmaster leaves the worker's tree; it is found by the environment
variable each worker sets, and its ended backends by its `cutime`). A live child's CPU already
counted from /proc is taken off `RUSAGE_CHILDREN` when it ends. Session fixtures (the worker's
PostgreSQL and NATS) fall on the file that first needs them, and a worker's last file is counted
before its last teardown; the row `(start)` is each worker's collection. Each xdist worker
writes `<file>.<worker>.jsonl`; the process that ran the session merges them into `<file>`, a
Markdown table sorted by total.
"""

import json
import os
import resource
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENV = "TEST_CPU_TABLE"
OWNER_ENV = "MAILPROBE_CPU_TABLE_OWNER"
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    own_s: float
    # CPU of its ended children it has waited for
    reaped_s: float


def _stat(pid: int) -> Proc | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    comm = head.partition("(")[2]
    # fields[0] is the state (field 3 of proc(5)): ppid is field 4, utime..cstime 14..17
    ticks = [int(f) for f in fields[11:15]]
    return Proc(
        pid, int(fields[1]), comm, (ticks[0] + ticks[1]) / _TICK, (ticks[2] + ticks[3]) / _TICK
    )


def _marked(pid: int, owner: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{OWNER_ENV}={owner}".encode() in environ.split(b"\0")


def _kind(comm: str) -> str:
    if comm.startswith("postgres"):
        return "postgres"
    if comm.startswith("nats-server"):
        return "nats"
    return "other"


def tree_totals(me: int, owner: str) -> dict[int, tuple[str, float, int]]:
    """Each top process of the worker (a child of `me`, or one carrying the owner's mark whose
    parent does not): its kind, its subtree's CPU-seconds (own, reaped, and its live
    descendants'), and its parent."""
    procs: dict[int, Proc] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (p := _stat(int(entry.name))) is not None:
            procs[p.pid] = p
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)

    def subtree(pid: int) -> float:
        p = procs[pid]
        return p.own_s + p.reaped_s + sum(subtree(c) for c in children.get(pid, []))

    tops: dict[int, tuple[str, float, int]] = {}
    for c in children.get(me, []):
        tops[c] = (_kind(procs[c].comm), subtree(c), me)
    descendants = set(tops)
    stack = list(tops)
    while stack:
        for c in children.get(stack.pop(), []):
            descendants.add(c)
            stack.append(c)
    for p in procs.values():
        if p.pid == me or p.pid in descendants or p.ppid in descendants:
            continue
        if _marked(p.pid, owner) and not _marked(p.ppid, owner):
            tops[p.pid] = (_kind(p.comm), subtree(p.pid), p.ppid)
    return tops


def _rusage_s(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


# eq=False: pytest keeps its plugins in sets
@dataclass(eq=False)
class CpuTable:
    path: Path
    worker: str
    me: int = field(default_factory=os.getpid)
    current: str | None = None
    started_wall: float = 0.0
    self_s: float = 0.0
    reaped_s: float = 0.0
    tops: dict[int, tuple[str, float, int]] = field(default_factory=dict)
    rows: list[dict[str, float | str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        os.environ[OWNER_ENV] = str(self.me)
        self.started_wall = time.monotonic()

    def _close(self, name: str) -> None:
        now_self = _rusage_s(resource.RUSAGE_SELF)
        now_reaped = _rusage_s(resource.RUSAGE_CHILDREN)
        tops = tree_totals(self.me, str(self.me))
        by_kind = {"postgres": 0.0, "nats": 0.0, "other": 0.0}
        for pid, (kind, total, _) in tops.items():
            before = self.tops.get(pid)
            by_kind[kind] += total - (before[1] if before and before[0] == kind else 0.0)
        # a child of the worker that ended since: RUSAGE_CHILDREN now holds all of it
        ended = sum(
            total
            for pid, (_, total, parent) in self.tops.items()
            if parent == self.me and pid not in tops
        )
        by_kind["other"] += now_reaped - self.reaped_s - ended
        wall = time.monotonic()
        self.rows.append(
            {
                "file": name,
                "worker": self.worker,
                "wall_s": wall - self.started_wall,
                "python_s": now_self - self.self_s,
                **{f"{k}_s": v for k, v in by_kind.items()},
            }
        )
        self.self_s, self.reaped_s, self.tops, self.started_wall = (
            now_self,
            now_reaped,
            tops,
            wall,
        )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None]:
        name = item.nodeid.partition("::")[0]
        if self.current is None:
            self._close("(start)")
        self.current = name
        yield
        if nextitem is not None and nextitem.nodeid.partition("::")[0] != name:
            self._close(name)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        # the last test's teardown ends the session's servers too: count its file before it
        if nextitem is None:
            self._close(item.nodeid.partition("::")[0])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        with open(f"{self.path}.{self.worker}.jsonl", "a") as out:
            for row in self.rows:
                out.write(json.dumps(row) + "\n")
        if self.worker == "main":
            write_table(self.path)


def write_table(path: Path) -> None:
    """Merge every worker's rows beside `path` into a Markdown table at `path`."""
    totals: dict[str, dict[str, float]] = {}
    for part in path.parent.glob(f"{path.name}.*.jsonl"):
        for line in part.read_text().splitlines():
            row = json.loads(line)
            into = totals.setdefault(row["file"], {})
            for key, value in row.items():
                if key.endswith("_s"):
                    into[key] = into.get(key, 0.0) + value
        part.unlink()
    keys = ["python_s", "other_s", "postgres_s", "nats_s"]
    ordered = sorted(totals.items(), key=lambda kv: -sum(kv[1].get(k, 0.0) for k in keys))
    lines = [
        "| file | CPU-s | python | processes | postgres | nats | wall-s |",
        "|---|---|---|---|---|---|---|",
    ]
    grand = 0.0
    for name, t in ordered:
        total = sum(t.get(k, 0.0) for k in keys)
        grand += total
        cells = " | ".join(f"{t.get(k, 0.0):.1f}" for k in keys)
        lines.append(f"| {name} | {total:.1f} | {cells} | {t.get('wall_s', 0.0):.1f} |")
    lines.append(f"| all ({len(ordered)} rows) | {grand:.1f} | | | | | |")
    path.write_text("\n".join(lines) + "\n")


def register(config: pytest.Config) -> None:
    """Turn the table on when TEST_CPU_TABLE names a file."""
    target = os.environ.get(ENV)
    if not target:
        return
    workerinput = getattr(config, "workerinput", None)
    worker = str(workerinput["workerid"]) if workerinput else "main"
    config.pluginmanager.register(CpuTable(Path(target).absolute(), worker), "cpu-table")
