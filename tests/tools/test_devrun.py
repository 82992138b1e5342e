"""`make run` across restarts: the alert sink keeps its port while the last run's connections
sit in TIME_WAIT (the README's monitor on 127.0.0.1:2525 stays up), and the API token is in a
file beside the admin password, readable by its owner only; the migrations it applies print
nothing at its default WARNING."""

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import nats
import pytest

from agent.settings import AgentSettings
from controller.access import accounts_store as accounts
from controller.access.credentials import new_token
from controller.settings import ControllerSettings
from shared import embedded
from shared.clock import WALL
from shared.settings import load
from shared.subjects import JOBS_STREAM
from tests.api.test_cli import ROOT
from tests.conftest import _with_database, scratch_database
from tools import devrun
from tools.alertsink import Running, Sink
from tools.devrun import (
    LAB_AGENT,
    LAB_CONTROLLER,
    TOKEN_FILE,
    AlreadyRunning,
    admin_token,
    hold_run,
    port_or_free,
    save_token,
)

pytestmark = pytest.mark.breadth


def _time_wait_on(port: int) -> None:
    """Leave a connection of `port` in TIME_WAIT on the listening side, as a sink that closed
    its clients' connections (HTTP/1.0 answers do) leaves behind when it stops: the accepted
    side closes first, and only then the client (the side that closes first keeps TIME_WAIT)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the sink's servers
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()
            assert client.recv(1) == b""  # the server's FIN has arrived


def _in_time_wait(port: int) -> bool:
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(
        int(f[1].split(":")[1], 16) == port and f[3] == "06"
        for f in (line.split() for line in lines)
    )


def test_the_sink_keeps_its_port_across_a_restart() -> None:
    port = embedded.free_port()
    _time_wait_on(port)
    assert _in_time_wait(port)
    assert port_or_free(port) == port
    again = Running(Sink(), embedded.free_port(), port)  # and the sink does bind it
    try:
        assert again.http_port == port
    finally:
        again.stop()


def test_a_run_reaches_its_own_loopback_servers_as_targets_and_as_report_mailbox() -> None:
    """The settings `make run` adds are the ones the agent and the controller read: its
    monitors may watch a loopback server, and its report mailbox may be one."""
    agent = load(AgentSettings, {**LAB_AGENT, "AGENT_COUNTRY": "DE"})
    assert agent.targets.agent_allow_private_targets
    controller = load(ControllerSettings, {**LAB_CONTROLLER, "DATABASE_URL": "postgresql://h/d"})
    assert controller.reports.reports_mailbox_allow_private


def test_a_second_run_of_the_same_directory_is_refused_before_it_starts_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a run holds `.run/`, another `make run` there stops at once, naming the first
    one's pid, and leaves the first run's endpoints alone (it would start a second NATS on
    the same store, and remove them as it stops); once the first is gone, a run starts."""
    first = hold_run(tmp_path)
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text("{}")
    monkeypatch.setattr(devrun, "RUN", tmp_path)
    with socket.socket() as busy:  # were the refusal missed, the run would stop at this port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("API_PORT", str(busy.getsockname()[1]))
        with pytest.raises(AlreadyRunning, match=rf"running already \(pid {os.getpid()}\)"):
            devrun.main()
    assert endpoints.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endpoints.json", "make-run.lock"]
    first.close()
    hold_run(tmp_path).close()


def test_a_run_killed_outright_does_not_hold_the_directory(tmp_path: Path) -> None:
    """A run killed with SIGKILL (no cleanup) lets the next one start: the kernel lets go of
    the hold with the process, whatever the lock file still says."""
    code = (
        "import sys, pathlib; from tools.devrun import hold_run;"
        f" held = hold_run(pathlib.Path({str(tmp_path)!r})); print('held', flush=True);"
        " sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            with pytest.raises(AlreadyRunning, match=rf"\(pid {holder.pid}\)"):
                hold_run(tmp_path)
        finally:
            holder.kill()
            holder.wait()
    assert (tmp_path / devrun.RUN_LOCK).read_text() == f"{holder.pid}\n"  # stale, not in force
    hold_run(tmp_path).close()


def test_a_busy_agent_metrics_port_stops_the_run_before_it_starts_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agents' metrics ports are chosen with the API's, so a busy one given in
    AGENT_METRICS_PORT stops the run naming it before PostgreSQL, NATS or the sink start."""
    monkeypatch.setattr(devrun, "RUN", tmp_path)
    monkeypatch.delenv("API_PORT", raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("AGENT_METRICS_PORT", str(busy.getsockname()[1]))
        with pytest.raises(devrun.PortBusy, match="AGENT_METRICS_PORT="):
            devrun.main()
    assert not {"pg", "nats", "seal"} & {p.name for p in tmp_path.iterdir()}


def test_a_port_someone_listens_on_is_not_free() -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not embedded.port_is_free(taken)
        assert port_or_free(taken) != taken


def test_the_token_is_saved_beside_the_password_for_its_owner_only(tmp_path: Path) -> None:
    old = tmp_path / TOKEN_FILE
    old.write_text("mp_old\n")
    old.chmod(0o644)  # a file left readable by others is made private again
    path = save_token(tmp_path, "mp_new-token")
    assert path == tmp_path / "admin-token"
    assert path.read_text() == "mp_new-token\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


_PREPARE = """
import asyncio, sys
from tools import devrun
devrun.own_logging(sys.argv[2])
print(asyncio.run(devrun.admin_token(sys.argv[1], "a-dev-password"))[:3])
"""


@pytest.mark.parametrize(("level", "shown"), [("WARNING", False), ("INFO", True)])
async def test_the_migrations_make_run_applies_print_at_its_level(
    database_url: str, level: str, shown: bool
) -> None:
    """A first `make run` migrates an empty database in its own process: at the default
    WARNING none of the 30-odd 'migration applied' lines comes before the banner."""
    name = f"mailprobe_devrun_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = _with_database(database_url, name)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PREPARE, url, level,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == "mp_"
        said = out.decode() + err.decode()
        assert ("migration applied" in said) is shown, said
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_token_outlives_a_restart_while_it_has_a_day_left(database_url: str) -> None:
    """`export TOKEN=$(cat .run/admin-token)` in a shell keeps working after Ctrl-C and `make
    run` again: the next run reuses the token it finds, unless it is not the admin's live one
    or has less than a day left."""
    async with scratch_database(database_url, "mailprobe_devrun") as url:
        first = await admin_token(url, "a-dev-password")
        assert await admin_token(url, "a-dev-password", first) == first
        assert await admin_token(url, "a-dev-password", "mp_not-a-token") != "mp_not-a-token"
        conn = await asyncpg.connect(url)
        try:
            admin = await accounts.user_for_login(conn, "admin@example.com")
            org = await accounts.ensure_organization(conn, "another")
            other = await accounts.create_user(conn, org, "x@example.com", "-", "owner")
            ending, ending_digest = new_token()
            assert admin is not None
            await accounts.issue_token(conn, admin.id, ending_digest, 3600, WALL.now())
            theirs, theirs_digest = new_token()
            await accounts.issue_token(conn, other.id, theirs_digest, 30 * 24 * 3600, WALL.now())
        finally:
            await conn.close()
        assert await admin_token(url, "a-dev-password", ending) != ending
        assert await admin_token(url, "a-dev-password", theirs) != theirs


async def test_dev_nats_nodes_starts_a_cluster_holding_the_streams_on_every_node(
    tmp_path: Path,
) -> None:
    """DEV_NATS_NODES=3 make run: three servers, NATS_URL naming each, the streams R3; a
    restart takes the same ports again (kept in .run/ports.json)."""
    env = {"DEV_NATS_NODES": "3"}
    kept = devrun.Ports.load(tmp_path)
    procs = await asyncio.to_thread(devrun.start_nats, env, tmp_path, None, kept)
    assert len(kept.picked) == 9
    for proc in procs:
        embedded.stop(proc)
    first = env.pop("NATS_URL")
    procs = await asyncio.to_thread(
        devrun.start_nats, env, tmp_path, None, devrun.Ports.load(tmp_path)
    )
    assert env["NATS_URL"] == first
    try:
        assert len(procs) == 3 and len(env["NATS_URL"].split(",")) == 3
        assert env["STREAM_REPLICAS"] == "3"
        await devrun.prepare_nats(env["NATS_URL"], int(env["STREAM_REPLICAS"]))
        nc = await nats.connect(env["NATS_URL"].split(","))
        try:
            info = await nc.jetstream().stream_info(JOBS_STREAM)
            assert info.config.num_replicas == 3
        finally:
            await nc.close()
    finally:
        for proc in procs:
            embedded.stop(proc)


def _listening(port: int = 0) -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder


def test_a_restart_takes_the_ports_the_last_run_kept_while_they_are_free(tmp_path: Path) -> None:
    """With the defaults busy the first run picks free ports and keeps them in .run/ports.json;
    the next run takes the same ones although the defaults are free again (the README's
    monitor of the sink, the TLS-RPT address and console links keep working)."""
    with _listening() as api_default, _listening() as sink_default:
        first = devrun.Ports.load(tmp_path)
        api = first.take("API", api_default.getsockname()[1])
        sink = first.take("alert sink SMTP", sink_default.getsockname()[1])
        assert api != api_default.getsockname()[1] and sink != sink_default.getsockname()[1]
        defaults = api_default.getsockname()[1], sink_default.getsockname()[1]
    again = devrun.Ports.load(tmp_path)
    assert (again.take("API", defaults[0]), again.take("alert sink SMTP", defaults[1])) == (
        api,
        sink,
    )
    assert again.moved == []
    assert json.loads((tmp_path / devrun.PORTS).read_text()) == {
        "API": api,
        "alert sink SMTP": sink,
    }


def test_a_kept_port_another_program_took_moves_and_the_run_says_so(tmp_path: Path) -> None:
    (tmp_path / devrun.PORTS).write_text("{}")
    first = devrun.Ports.load(tmp_path)
    api = first.take("API", embedded.free_port())
    nats_port = first.take("NATS", embedded.free_port())
    with _listening(api):
        again = devrun.Ports.load(tmp_path)
        moved = again.take("API", nats_port)  # its default is NATS's kept port: not that one
    assert moved not in (api, nats_port)
    assert again.take("NATS", 4222) == nats_port
    assert again.moved == [
        f"API: port {api} (kept in .run/ports.json) is in use by another program, so moved to"
        f" {moved}; whatever names {api} must change"
    ]
    assert devrun.Ports.load(tmp_path).kept["API"] == moved
    banner = devrun.moved(again)  # said again in the banner, which stays on screen
    assert banner.startswith("\n  Moved this run") and again.moved[0] in banner
    assert devrun.moved(devrun.Ports.load(tmp_path)) == ""


def test_an_unreadable_ports_file_keeps_nothing(tmp_path: Path) -> None:
    (tmp_path / devrun.PORTS).write_text('{"API": "8080", "NATS": 99999, "sink": [1]}')
    assert devrun.Ports.load(tmp_path).kept == {}
    (tmp_path / devrun.PORTS).write_text("not json")
    assert devrun.Ports.load(tmp_path).kept == {}


def test_the_shell_env_file_sets_the_walkthrough_variables_for_its_owner_only(
    tmp_path: Path,
) -> None:
    sink = devrun.sink_env({}, 2600, 8600)
    path = devrun.write_shell_env(tmp_path, "http://127.0.0.1:28092", "mp_x'y", sink, 2600, 8600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = subprocess.run(
        ["bash", "-c", f'source {path}; echo "$API|$CONSOLE|$TOKEN|$SINK|$SINK_SMTP_PORT"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == (
        "http://127.0.0.1:28092|http://127.0.0.1:28092/console/|mp_x'y|http://127.0.0.1:8600|2600\n"
    )
    relayed = devrun.sink_env(
        {"NOTIFY_SMTP_URL": "smtp://r", "NOTIFY_SMS_WEBHOOK_URL": "http://s"}, 1, 2
    )
    text = devrun.write_shell_env(tmp_path, "http://127.0.0.1:1", "t", relayed, 0, 0).read_text()
    assert "SINK" not in text
