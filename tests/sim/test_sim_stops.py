"""`python -m testkit.sim` stopped by SIGTERM (a CI job's timeout, `kill`) stops its embedded
PostgreSQL and removes the server's folder, as Ctrl-C does, and exits 1 saying why."""

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def _server_in(folder: Path, within_s: float) -> psutil.Process:
    """The embedded server whose data is under `folder` (pg_ctl starts it detached, so it is
    no child of the sim)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["name", "cmdline"]):
            if p.info["name"] == "postgres" and str(folder) in " ".join(p.info["cmdline"] or []):
                return p
        await asyncio.sleep(0.1)
    raise AssertionError(f"no embedded PostgreSQL with its data under {folder} in {within_s} s")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A folder of a short path: the server's socket goes under it, and a Unix socket's path
    holds at most 107 bytes (an xdist worker's `tmp_path` is longer)."""
    folder = Path(tempfile.mkdtemp(prefix="mp-sim-stop-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_sigterm_stops_the_embedded_server_and_removes_its_folder(short_tmp: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "testkit.sim", "--seed", "1", "--monitors", "2", "--hours", "24"),
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(short_tmp)},  # its server's folder goes there
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    server: psutil.Process | None = None
    try:
        try:
            server = await _server_in(short_tmp, 60)
        except AssertionError as missing:
            raise AssertionError(f"{missing}; the sim: {await _said(proc)}") from None
        await asyncio.sleep(1)  # into its migrations or its first history
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1, err.decode()[-2000:]
        assert "stopped by SIGTERM" in err.decode(), err.decode()[-2000:]
        server.wait(10)  # stopped, not left running
        left = await asyncio.to_thread(lambda: sorted(short_tmp.glob("mailprobe-sim-*")))
        assert left == []  # its folder removed
    finally:
        if proc.returncode is None:
            proc.kill()
        if server is not None and server.is_running():
            server.kill()


async def _said(proc: asyncio.subprocess.Process) -> str:
    """The sim's exit code and the end of its output, once it ended (or after 5 s)."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 5)
    except TimeoutError:
        return "still running"
    return f"exit {proc.returncode}: {(out + err).decode()[-3000:]}"
