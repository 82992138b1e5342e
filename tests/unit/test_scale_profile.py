"""`make bench scale --profile` (testkit.campaigns.scale_profile): a py-spy sample goes to the
part of the innermost frame in the controller's own code."""

import pytest

from testkit.campaigns.scale_profile import LOOP, part_of, shares

ROOT = "/srv/mailprobe"
LIB = "/usr/lib/python3.11/site-packages"


def frame(func: str, path: str) -> str:
    return f"{func} ({path}:10)"


@pytest.mark.parametrize(
    ("frames", "part"),
    [
        ([frame("run", f"{LIB}/uvloop/__init__.py")], f"{LOOP}: uvloop"),
        (
            [
                frame("main", f"{ROOT}/controller/__main__.py"),
                frame("run", "asyncio/runners.py"),
                frame("data_received", f"{LIB}/asyncpg/protocol/protocol.pyx"),
            ],
            f"{LOOP}: asyncpg",
        ),
        (
            [frame("main", f"{ROOT}/controller/__main__.py"), frame("run", "asyncio/runners.py")],
            f"{LOOP}: asyncio",
        ),
        (
            [
                frame("_pass", f"{ROOT}/controller/scheduling/scheduler.py"),
                frame("take", f"{ROOT}/controller/scheduling/admission_ledger.py"),
                frame("fetch", f"{LIB}/asyncpg/connection.py"),
            ],
            "scheduler: admission",
        ),
        (
            [
                frame("_pass", f"{ROOT}/controller/scheduling/scheduler.py"),
                frame("victims", f"{ROOT}/controller/scheduling/preemption.py"),
            ],
            "scheduler: preemption",
        ),
        (
            [
                frame("_pass", f"{ROOT}/controller/scheduling/scheduler.py"),
                frame("make", f"{ROOT}/controller/jobs/rules.py"),
                frame("blake2b", "<built-in>"),
            ],
            "job ids",
        ),
        (
            [
                frame("beat", f"{ROOT}/controller/fleet/live.py"),
                frame("loads", f"{LIB}/msgspec/__init__.py"),
            ],
            "heartbeats: live agents, their load and tenants",
        ),
        (
            [
                frame("burst", f"{ROOT}/controller/ingest/ingester.py"),
                frame("store", f"{ROOT}/controller/ingest/store.py"),
                frame("executemany", f"{LIB}/asyncpg/connection.py"),
            ],
            "result writes (ingester, results store)",
        ),
        ([frame("pack_pass", f"{ROOT}/controller/ingest/packer.py")], "packer"),
        ([frame("handle", f"{ROOT}/controller/web/api/results.py")], "API"),
        ([frame("main", f"{ROOT}/controller/cli.py")], "controller: other"),
        ([], f"{LOOP}: interpreter and C"),
        (["_PyEval_EvalFrameDefault (libpython3.11.so.1.0)"], f"{LOOP}: interpreter and C"),
    ],
)
def test_a_sample_goes_to_its_innermost_product_frame(frames: list[str], part: str) -> None:
    assert part_of(";".join(frames)) == part


def test_shares_count_every_sample_once() -> None:
    raw = "\n".join(
        [
            f"{frame('run', f'{LIB}/uvloop/__init__.py')} 30",
            f"{frame('store', f'{ROOT}/controller/ingest/store.py')} 50",
            f"{frame('victims', f'{ROOT}/controller/scheduling/preemption.py')} 20",
            "",
            "not a sample line",
        ]
    )
    total, parts = shares(raw)
    assert total == 100
    assert parts == {
        "result writes (ingester, results store)": 0.5,
        f"{LOOP}: uvloop": 0.3,
        "scheduler: preemption": 0.2,
    }
    assert shares("") == (0, {})
