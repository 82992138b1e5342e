"""The simulation's speed counts the server's CPU (`testkit.sim.cli._server_cpu`): the
postmaster's, its children's alive now and those it reaped. Read while children come and go, the
figure never falls (by more than two clock ticks): a child ending while it is read is counted
once, alive or reaped."""

import itertools
import subprocess
import sys
import time
from pathlib import Path

from testkit.sim.cli import _server_cpu

# A parent that starts one short child after another, each burning a little CPU, and reaps it.
PARENT = """
import subprocess, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    subprocess.run([sys.executable, "-S", "-c", "sum(range(300_000))"], check=True)
"""
READ_S = 2.0
TICKS = 0.02  # two clock ticks: a child's time read alive and added at its reaping may differ


def test_a_server_whose_children_come_and_go_is_read_without_a_fall(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(READ_S + 3)])
    try:
        (tmp_path / "postmaster.pid").write_text(f"{parent.pid}\n{tmp_path}\n")
        time.sleep(0.5)  # its first children started
        reads = [_server_cpu(tmp_path)]
        end = time.monotonic() + READ_S
        while time.monotonic() < end:
            reads.append(_server_cpu(tmp_path))
    finally:
        parent.kill()
        parent.wait()
    falls = [(a, b) for a, b in itertools.pairwise(reads) if b < a - TICKS]
    assert not falls, f"{len(falls)} of {len(reads)} reads fell, the first {falls[0]}"
    assert reads[-1] - reads[0] > 0.1, reads  # its children's CPU was counted
    print(f"{len(reads)} reads, {reads[-1] - reads[0]:.2f} CPU-s counted")
