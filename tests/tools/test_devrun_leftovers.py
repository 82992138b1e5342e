"""`make run` after a run killed outright: the next run stops what the killed one left running
(its recorded processes, still alive and really its own), never a process that took over a
recorded pid, and ignores a record whose processes are gone. A `.run/` it cannot write stops
it with one line, not a traceback. Real processes throughout: NATS, and Python processes whose
command line names the run's directory, as `make run`'s children do."""

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared import embedded
from tests.api.test_cli import ROOT
from tools import devrun
from tools.devrun import CHILDREN, Record, Started, hold_run, started, stop_leftovers

# Waits for a signal it ignores: only SIGKILL stops it (a child stuck in its shutdown).
_STUBBORN = (
    "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', flush=True); signal.pause()"
)

# A `make run` in miniature: holds the directory, starts NATS and a child that ignores
# SIGTERM, records both as `make run` does, prints their pids, and waits to be killed.
_RUN = """
import json, pathlib, subprocess, sys
from shared import embedded
from tools import devrun
run = pathlib.Path(sys.argv[1])
held = devrun.hold_run(run)
record = devrun.Record(run)
server, _ = embedded.start_nats(run / "nats", own_session=True)
record.add("NATS", server.pid)
stubborn = subprocess.Popen(
    [sys.executable, "-c", sys.argv[2], str(run)], stdout=subprocess.PIPE,
    start_new_session=True, text=True,
)
assert stubborn.stdout.readline() == "ready\\n"
record.add("the controller", stubborn.pid)
print(json.dumps([server.pid, stubborn.pid]), flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    return started("", pid) is not None


def _sleeper(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import signal; signal.pause()", *args], start_new_session=True
    )


def _recorded_now(what: str, pid: int) -> Started:
    found = started(what, pid)
    assert found is not None
    return found


def test_a_run_killed_outright_leaves_nothing_running_for_the_next(tmp_path: Path) -> None:
    """SIGKILL on a run leaves its children up; the next run, once it holds the directory,
    stops them (the last started first, SIGKILL for one that ignores SIGTERM), says so in a
    line each, and its own NATS then starts on the same store."""
    with subprocess.Popen(
        [sys.executable, "-c", _RUN, str(tmp_path), _STUBBORN],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as killed:
        try:
            assert killed.stdout is not None
            nats_pid, stubborn_pid = json.loads(killed.stdout.readline())
        finally:
            killed.kill()
            killed.wait()
    try:
        assert _alive(nats_pid) and _alive(stubborn_pid)  # what the kill left behind
        with hold_run(tmp_path):
            said = stop_leftovers(tmp_path, timeout=0.5)
            assert said == [
                f"stopped the controller (pid {stubborn_pid}), left running by a killed make run",
                f"stopped NATS (pid {nats_pid}), left running by a killed make run",
            ]
            assert not _alive(nats_pid) and not _alive(stubborn_pid)
            again, _ = embedded.start_nats(tmp_path / "nats")
            embedded.stop(again)
            assert stop_leftovers(tmp_path) == []  # once stopped, a later run has nothing to do
    finally:  # a failure above leaves no server of this test running on the shared machine
        for pid in (nats_pid, stubborn_pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_recorded_pid_now_another_processes_is_left_alone(tmp_path: Path) -> None:
    """A recorded pid reused by another process is never signalled: neither one whose command
    line differs from the record's, nor one naming the run's directory that started at
    another time than the recorded one did."""
    unrelated = subprocess.Popen(["sleep", "60"])
    look_alike = _sleeper(str(tmp_path))
    try:
        other = _recorded_now("NATS", unrelated.pid)
        mine = _recorded_now("the controller", look_alike.pid)
        entries = [
            Started(other.what, other.pid, other.since, [sys.executable, str(tmp_path)]),
            Started(mine.what, mine.pid, mine.since - 1, mine.cmdline),
        ]
        (tmp_path / CHILDREN).write_text(json.dumps([e.__dict__ for e in entries]))
        (tmp_path / CHILDREN).chmod(0o600)  # a record it reads
        assert stop_leftovers(tmp_path, timeout=0.5) == []
        assert unrelated.poll() is None and look_alike.poll() is None
    finally:
        for proc in (unrelated, look_alike):
            proc.kill()
            proc.wait()


def test_a_record_of_processes_gone_is_ignored_and_replaced(tmp_path: Path) -> None:
    gone = _sleeper(str(tmp_path))
    Record(tmp_path).add("the agent of DE", gone.pid)
    gone.kill()
    gone.wait()
    assert stop_leftovers(tmp_path) == []
    (tmp_path / CHILDREN).write_text("{not json")  # a record cut short
    assert stop_leftovers(tmp_path) == []
    child = _sleeper(str(tmp_path))
    try:
        Record(tmp_path).add("the controller", child.pid)  # this run's record replaces it
        assert [e.pid for e in devrun.recorded(tmp_path)] == [child.pid]
    finally:
        child.kill()
        child.wait()


def test_a_run_dir_of_another_user_stops_the_run_with_one_line(tmp_path: Path) -> None:
    """`.run/` another user's (nobody's): the run stops with one line naming it and its owner,
    not a traceback. As root (which writes anywhere) the run goes without the capabilities
    that let it (`setpriv`); as any other user the directory is also made read-only."""
    run = tmp_path / ".run"
    run.mkdir(mode=0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to run without root's capabilities")
        os.chown(run, 65534, 65534)
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    else:
        run.chmod(0o555)
    code = (
        "import pathlib, sys; from tools import devrun;"
        " devrun.RUN = pathlib.Path(sys.argv[1]); sys.exit(devrun.main())"
    )
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", code, str(run)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        run.chmod(0o755)
    owner = run.stat().st_uid
    mode = "755" if prefix else "555"
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"[make run] cannot write {run / devrun.RUN_LOCK} (Permission denied;"
        f" {run} is uid {owner}'s, mode {mode}): run make run as its owner, or from a clone"
        " of your own"
    ]
    assert list(run.iterdir()) == []


def test_make_run_stops_the_leftovers_before_it_starts_anything(tmp_path: Path) -> None:
    """`make run` itself stops a killed run's child (as soon as it holds the directory, before
    a busy port given in a setting stops it) and says so. It runs in a process of its own: it
    sets up logging for the whole process, on the streams of the moment."""
    leftover = _sleeper(str(tmp_path))
    code = (
        "import pathlib, sys; from tools import devrun;"
        " devrun.RUN = pathlib.Path(sys.argv[1]); sys.exit(devrun.main())"
    )
    try:
        Record(tmp_path).add("the controller", leftover.pid)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            env = {k: v for k, v in os.environ.items() if k != "API_PORT"}
            env["AGENT_METRICS_PORT"] = str(busy.getsockname()[1])
            done = subprocess.run(
                [sys.executable, "-c", code, str(tmp_path)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert done.returncode == 1 and "AGENT_METRICS_PORT=" in done.stderr, done.stderr
        assert leftover.wait(5) == -signal.SIGTERM
        assert f"stopped the controller (pid {leftover.pid})" in done.stdout
    finally:
        leftover.kill()
        leftover.wait()


def test_the_embedded_servers_users_lose_the_pids_of_processes_gone(tmp_path: Path) -> None:
    """The library stops PostgreSQL at the exit of the last process in its list: a killed
    run's pid left there would keep the server of every later run up after Ctrl-C."""
    gone = _sleeper()
    gone.kill()
    gone.wait()
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([gone.pid, os.getpid()]))
    devrun.forget_dead_handles(tmp_path)
    assert json.loads(handles.read_text()) == [os.getpid()]
    devrun.forget_dead_handles(tmp_path / "none")  # no server there yet: nothing to do


def test_a_leftover_this_user_may_not_stop_is_named_with_the_command_to_stop_it(
    tmp_path: Path,
) -> None:
    """A killed run's process that this run may not signal (another user's: `nobody`'s here,
    stopped by a run without root's CAP_KILL) stops the run with one line naming it and the
    command that stops it; the process is left as it was."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to make a process of another user")
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    with subprocess.Popen(
        [*as_nobody, "sh", "-c", "echo ready; read x", str(tmp_path)],  # names the run's dir
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as theirs:
        try:
            assert theirs.stdout is not None and theirs.stdout.readline() == "ready\n"
            Record(tmp_path).add("NATS", theirs.pid)
            code = (
                "import pathlib, sys; from tools import devrun;"
                " devrun.stop_leftovers(pathlib.Path(sys.argv[1]))"
            )
            without_kill = [setpriv, "--inh-caps=-kill", "--bounding-set=-kill"]
            done = subprocess.run(
                [*without_kill, sys.executable, "-c", code, str(tmp_path)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 1
            assert done.stderr.splitlines() == [
                f"[make run] NATS (pid {theirs.pid}) of a killed make run of this directory is"
                f" still running and not this user's to stop: stop it (sudo kill {theirs.pid})"
                " and run again"
            ]
            assert theirs.poll() is None
        finally:
            theirs.kill()
            theirs.wait()


def _reader(*args: str, user: list[str] | None = None) -> subprocess.Popen[str]:
    """A process of `user` (a command prefix; this one's by default), not this interpreter,
    with `args` on its command line, up once it has said so."""
    proc = subprocess.Popen(
        [*(user or []), "sh", "-c", "echo ready; read x", "sh", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def _end(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        proc.kill()
        proc.communicate()  # waits, and closes its pipes


def test_an_argument_holding_the_runs_path_as_text_does_not_name_it(tmp_path: Path) -> None:
    """Another checkout's process whose paths hold this run's as text (`/copy/<run>/pg`, a
    `<run>.old`) is not this run's, though a record names it with its true start and command
    line (a `.run/` copied with a checkout still running): never signalled."""
    run = tmp_path / ".run"
    run.mkdir()
    others = [_reader(f"/copy{run}/pg"), _reader(f"{run}.old/pg")]
    try:
        record = Record(run)
        for proc in others:
            record.add("PostgreSQL", proc.pid)
        assert len(devrun.recorded(run)) == 2
        assert stop_leftovers(run, timeout=0.5) == []
        assert [proc.poll() for proc in others] == [None, None]
        mine = _reader(f"{run}/pg")  # a path in the run's directory: its own
        try:
            Record(run).add("PostgreSQL", mine.pid)
            assert stop_leftovers(run, timeout=0.5) == [
                f"stopped PostgreSQL (pid {mine.pid}), left running by a killed make run"
            ]
        finally:
            _end(mine)
    finally:
        _end(*others)


def test_a_record_another_user_could_have_written_is_not_read(tmp_path: Path) -> None:
    """The record says what to signal: one that others may write, another user's, or a link
    is not read (its processes are left alone); the record a run writes is read."""
    leftover = _sleeper(str(tmp_path))
    record = tmp_path / CHILDREN
    try:
        Record(tmp_path).add("the controller", leftover.pid)
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        for mode in (0o620, 0o602):
            record.chmod(mode)
            assert devrun.recorded(tmp_path) == []
        record.chmod(0o600)
        record.rename(tmp_path / "elsewhere.json")
        record.symlink_to(tmp_path / "elsewhere.json")
        assert devrun.recorded(tmp_path) == []
        record.unlink()
        (tmp_path / "elsewhere.json").rename(record)
        if os.geteuid() == 0:
            os.chown(record, 65534, 65534)
            assert devrun.recorded(tmp_path) == []
            os.chown(record, 0, 0)
        assert stop_leftovers(tmp_path, timeout=0.5) == [
            f"stopped the controller (pid {leftover.pid}), left running by a killed make run"
        ]
    finally:
        leftover.kill()
        leftover.wait()


def test_a_run_as_root_never_signals_another_users_leftover(tmp_path: Path) -> None:
    """Root may signal anyone: a recorded process now another user's (`nobody`'s here) stops
    the run with the line naming it, as for a user who may not, and is left as it was."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to make a process of another user")
    theirs = _reader(
        str(tmp_path), user=[setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    )
    try:
        Record(tmp_path).add("NATS", theirs.pid)
        with pytest.raises(devrun.LeftoverRunning, match="not this user's to stop"):
            stop_leftovers(tmp_path, timeout=0.5)
        assert theirs.poll() is None
    finally:
        _end(theirs)


def test_a_child_recorded_before_it_execs_is_recorded_as_its_program(tmp_path: Path) -> None:
    """A child forked but not yet exec'd shows the run's own command line: the record waits
    for the program's, so the next run knows the process and stops it."""
    pid = os.fork()
    if pid == 0:  # the child: exec late, as a loaded machine may
        time.sleep(0.3)
        os.execv(sys.executable, [sys.executable, "-c", "import signal; signal.pause()"])
    try:
        Record(tmp_path).add("the controller", pid)
        [entry] = devrun.recorded(tmp_path)
        assert entry.cmdline[1:] == ["-c", "import signal; signal.pause()"]
        assert stop_leftovers(tmp_path, timeout=0.5) == [
            f"stopped the controller (pid {pid}), left running by a killed make run"
        ]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
