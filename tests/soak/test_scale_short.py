"""`make bench scale`: how it counts CPU (a process's own time; PostgreSQL's backends that ended
in the window through the postmaster's reaped children), and a short run of the whole rig
(40 monitors, a 3 s window) that prints every figure, and the Prometheus peer's run: `make soak`
runs those two (SOAK_FULL=1), as they run the benchmark's rig, not the product's rules."""

import os
import subprocess
import sys
import time

import pytest
import yaml

from testkit.campaigns import prometheus_peer
from testkit.campaigns.scale import Figures, PostgresCpu, pair_order, read_figures, without_options
from testkit.common import cpu_s, loop_seconds

FULL = pytest.mark.skipif(os.environ.get("SOAK_FULL") != "1", reason="make soak runs it")
BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_a_process_own_cpu_time_is_counted() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN + "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while cpu_s(child.pid) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cpu_s(child.pid) >= 0.3
    finally:
        child.kill()
        child.wait()
    assert cpu_s(child.pid) == 0.0  # gone: nothing to count


def test_the_machine_speed_is_the_loop_own_cpu_time() -> None:
    assert loop_seconds(0) < 0.01 < loop_seconds(2_000_000)


def test_children_that_ended_in_the_window_count_through_their_parent() -> None:
    """As PostgreSQL's backends do: started after the first sample, reaped before the last."""
    counted = PostgresCpu(postmaster=os.getpid())
    subprocess.run([sys.executable, "-c", BURN], check=True)  # reaped here
    assert counted.used() >= 0.3


RUN = """  CPU ms per check: controller 0.117, PostgreSQL 0.131, NATS 0.105
  idle (no monitors), CPU ms per second: controller 7, PostgreSQL 3, NATS 5; per check beyond
  central total 0.353 ms/check   target <= 0.3 ms: FAIL
"""


@pytest.mark.parametrize(
    ("out", "figures"),
    [
        (RUN, Figures(0.117, 0.131, 0.105, 0.353, True)),
        (RUN + "  checks that ran: 10 of 400 due: the rig did not keep up", None),
        ("Traceback (most recent call last):", None),
        (RUN.replace("central total", "central"), None),
    ],
)
def test_side_by_side_reads_a_runs_figures(out: str, figures: Figures | None) -> None:
    got = read_figures(out)
    if figures is None and got is not None:
        assert not got.complete  # an incomplete rig's figures are read, and flagged
    else:
        assert got == figures


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        (["--against", "/w/base", "--pairs", "2", "--window", "60"], ["--window", "60"]),
        (["--window", "60", "--against=/w/base", "--pairs=5"], ["--window", "60"]),
        (["--statements", "--against", "x"], ["--statements"]),
        (["--window", "60"], ["--window", "60"]),
    ],
)
def test_side_by_side_runs_each_tree_with_the_other_arguments(
    argv: list[str], kept: list[str]
) -> None:
    assert without_options(argv, ("--against", "--pairs")) == kept


@FULL
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_short_run_prints_every_figure() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "testkit.campaigns.scale",
            "--monitors",
            "40",
            "--idle",
            "1",
            "--warmup",
            "2",
            "--window",
            "3",
            "--prometheus",
            "0",  # the peer's own test is below
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = run.stdout
    assert run.returncode in (0, 1), run.stderr[-2000:]
    for figure in (
        "CPU ms per check: controller",
        # PostgreSQL's share by whose session spent it.
        "PostgreSQL CPU ms per check by process:",
        "mailprobe controller alerter,api,ingester,scheduler",  # in any place: sorted by CPU
        "central total",
        "stored per result:",
        "store lag",
        "alerter lag",
        "projection: 300,000 monitors",
        "counts to 10 M in a Python loop",
    ):
        assert figure in out, out


@pytest.mark.parametrize(
    ("n", "first"),
    [(1, "this"), (2, "against"), (3, "this"), (4, "against")],
)
def test_side_by_side_takes_turns_at_going_first(n: int, first: str) -> None:
    order = pair_order(n)
    assert order[0] == first and sorted(order) == ["against", "this"]


def test_the_peer_scrapes_every_monitor_in_every_country_as_a_target_of_its_own() -> None:
    config = yaml.safe_load(
        prometheus_peer.prometheus_config(9115, "127.0.0.1:25", 3, ("DE", "US"), 10)
    )
    [job] = config["scrape_configs"]
    groups = job["static_configs"]
    assert len(groups) == 6
    assert {(g["labels"]["monitor"], g["labels"]["country"]) for g in groups} == {
        (str(n), c) for n in range(3) for c in ("DE", "US")
    }
    assert config["global"]["scrape_interval"] == "10s"
    assert job["params"] == {"module": ["smtp_plain"]}


@FULL
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_peer_stores_every_probe_and_counts_prometheus_cpu() -> None:
    if (why := prometheus_peer.skip_reason()) is not None:
        pytest.skip(why)
    peer = prometheus_peer.measure(5, ("DE", "US"), 2, 3.0, 6.0)
    due = 10 / 2 * peer.window_s
    print(peer)
    # a loaded machine's Prometheus scrapes late: fewer probes than due, never more
    assert 0.5 * due <= peer.probes <= due + 10
    assert peer.succeeded == peer.probes  # the same dialogue as a plain SMTP check, answered
    assert peer.prometheus_ms > 0 and peer.exporter_ms > 0
