"""`python -m agent --country CC` as operators run it: a real process against the real NATS."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from structlog.testing import capture_logs

from agent.__main__ import _connect
from agent.probers.tls import SslContexts
from agent.settings import AgentSettings
from shared import embedded
from shared.messages import decode_heartbeat
from shared.settings import load
from shared.streams import ensure_streams
from shared.subjects import heartbeats_subject
from tests.agent.helpers import until, worker
from tests.conftest import PROCESS_START_S

ROOT = Path(__file__).resolve().parents[2]


def agent_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "NATS_", "LOG_"))}
    # No ops server unless a test asks: several agents at once would contend for port 9464.
    return {**env, "LOG_FORMAT": "json", "AGENT_METRICS_PORT": "0", **values}


async def start_agent(*args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        *args,
        env=agent_env(**env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_agent(proc: asyncio.subprocess.Process) -> list[dict[str, Any]]:
    """SIGTERM, wait for a clean exit, return its JSON log lines."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 5)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in err.decode().splitlines()]


async def test_agent_starts_heartbeats_and_stops_cleanly_on_sigterm(nc: NATS) -> None:
    """Heartbeats on its country's subject while it runs, and a last one saying `stopping`."""
    agent_id = f"DE-proc-{uuid.uuid4().hex[:8]}"
    beats = await nc.subscribe(heartbeats_subject("DE", agent_id))
    await nc.flush()
    await nc.flush()
    proc = await start_agent(
        "--country",
        "DE",
        NATS_URL=nats_url_of(nc),
        AGENT_ID=agent_id,
        AGENT_TENANT_SLOT_SHARE="0.3",
    )
    try:
        first = decode_heartbeat((await beats.next_msg(timeout=PROCESS_START_S)).data)
    finally:
        logs = await stop_agent(proc)
    assert (first.agent_id, first.country, first.capacity, first.stopping) == (
        agent_id,
        "DE",
        200,
        False,
    )
    last = first
    while not last.stopping:
        last = decode_heartbeat((await beats.next_msg(timeout=5)).data)
    assert last.agent_id == agent_id
    events = [line["event"] for line in logs]
    assert events[0] == "nats_connected" and events[-1] == "agent_exit"
    assert {"agent_started", "signal_received", "agent_stopped"} <= set(events)
    [started] = [line for line in logs if line["event"] == "agent_started"]
    assert (started["tenant_cap"], started["lookahead"]) == (60, 200)  # 0.3 of 200 slots
    assert all(line["agent_id"] == agent_id for line in logs)
    assert not [line for line in logs if line["level"] not in ("debug", "info")]


async def test_an_agent_with_canaries_reports_them_in_its_heartbeat(nc: NATS) -> None:
    """AGENT_CANARIES and AGENT_CANARY_RESOLVE reach the worker: the beats carry what the
    canaries saw, and a port all of whose canaries fail is blocked, logged once."""
    agent_id = f"DE-canary-{uuid.uuid4().hex[:8]}"
    closed = embedded.free_port()
    beats = await nc.subscribe(heartbeats_subject("DE", agent_id))
    await nc.flush()
    proc = await start_agent(
        "--country",
        "DE",
        NATS_URL=nats_url_of(nc),
        AGENT_ID=agent_id,
        AGENT_CANARIES=f"127.0.0.1:{closed}",
        AGENT_CANARY_RESOLVE="localhost",
    )
    try:
        beat = decode_heartbeat((await beats.next_msg(timeout=PROCESS_START_S)).data)
        while beat.self_check is None or beat.self_check.resolver_ok is None:
            beat = decode_heartbeat((await beats.next_msg(timeout=5)).data)
    finally:
        logs = await stop_agent(proc)
    assert beat.self_check.blocked_ports == [closed]
    assert [(c.target, c.ok, c.error) for c in beat.self_check.canaries] == [
        (f"127.0.0.1:{closed}", False, "refused"),
        ("localhost", True, ""),
    ]
    assert [line["port"] for line in logs if line["event"] == "port_blocked"] == [closed]


def nats_url_of(nc: NATS) -> str:
    assert nc.connected_url is not None
    return f"nats://{nc.connected_url.netloc}"


async def test_agent_keeps_trying_an_unreachable_nats_and_still_stops_on_sigterm() -> None:
    proc = await start_agent("--country", "DE", NATS_URL=f"nats://127.0.0.1:{embedded.free_port()}")
    # Two failed attempts: it keeps trying, and the signal goes to a running agent, not to one
    # still importing on a loaded machine (whose default handler would just end it).
    assert proc.stderr is not None
    first: list[dict[str, Any]] = []
    async with asyncio.timeout(PROCESS_START_S):
        while sum(line["event"] == "nats_error" for line in first) < 2:
            raw = await proc.stderr.readline()
            assert raw, "the agent gave up on NATS"
            first.append(json.loads(raw))
    assert proc.returncode is None, "the agent gave up on NATS"
    logs = first + await stop_agent(proc)
    assert logs[-1]["event"] == "signal_received"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "error: setting AGENT_COUNTRY is required but not set"),
        (["--country", "DEU"], {}, "error: setting AGENT_COUNTRY must be an upper-case"),
        (["--country", "DE"], {"NATS_URL": "http://x"}, "error: setting NATS_URL must start"),
        (["--country", "DE"], {"AGENT_CONCURRENCY": "0"}, "error: setting AGENT_CONCURRENCY"),
        (["--country", "DE"], {"AGENT_ID": "a b"}, "error: setting AGENT_ID must be"),
        (
            ["--country", "DE"],
            {"AGENT_TENANT_SLOT_SHARE": "0"},
            "error: setting AGENT_TENANT_SLOT_SHARE",
        ),
        (
            ["--country", "DE"],
            {"AGENT_CANARIES": "127.0.0.1:25,mx.example"},
            "error: setting AGENT_CANARIES: entry 2 of 2 is not `host:port`",
        ),
    ],
)
def test_a_bad_setting_is_one_line_on_stderr_and_exit_2(
    args: list[str], env: dict[str, str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env=agent_env(**env),
        cwd=ROOT,
        capture_output=True,
        timeout=PROCESS_START_S,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode().startswith(message)
    assert done.stderr.decode().count("\n") == 1
    assert done.stdout == b""


def test_a_bad_setting_is_reported_before_the_worker_is_imported() -> None:
    """The worker, its probers and the receiver are loaded once the settings hold."""
    probe = (
        "import sys\nfrom agent.__main__ import main\ncode = main([])\n"
        "print(code, *(m for m in ('agent.worker', 'agent.receiver.service') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=agent_env(),
        cwd=ROOT,
        capture_output=True,
        timeout=PROCESS_START_S,
        check=False,
    )
    assert done.stdout.decode().split() == ["2"], done.stdout + done.stderr
    assert done.stderr.decode().startswith("error: setting AGENT_COUNTRY is required")


async def test_a_worker_waits_for_the_jobs_stream_instead_of_exiting(
    bare_nats: str, ssl_contexts: SslContexts
) -> None:
    nc = await nats.connect(bare_nats)
    try:
        w = worker(nc, "DE", ssl_contexts, retry_delay=0.1)
        with capture_logs() as logs:
            run = asyncio.create_task(w.run(burst=True))
            await asyncio.sleep(0.3)
            assert not run.done()
            await ensure_streams(nc.jetstream())
            await asyncio.wait_for(run, 3)
        events = [e["event"] for e in logs]
        assert "jobs_stream_missing" in events and events[-1] == "agent_stopped"
    finally:
        await nc.close()


@pytest.fixture
def nats_with_password(tmp_path: Path) -> Iterator[tuple[int, str, str]]:
    """A nats-server of its own that wants a user and password: (port, user, password)."""
    user, password = "agent-de", f"Pw-{uuid.uuid4().hex}"
    config = tmp_path / "auth.conf"
    config.write_text(f'authorization {{ user: "{user}", password: "{password}" }}\n')
    port = embedded.free_port()
    proc, _ = embedded.start_nats(tmp_path / "nats", port, config=config)
    yield port, user, password
    embedded.stop(proc)


def assert_no_userinfo(logs: Sequence[Mapping[str, Any]], *secrets: str) -> None:
    text = json.dumps(logs, default=str)
    for secret in secrets:
        assert secret not in text


async def test_the_nats_user_and_password_in_nats_url_never_reach_a_log_line(
    nats_with_password: tuple[int, str, str],
) -> None:
    port, user, password = nats_with_password
    url = f"nats://{user}:{password}@127.0.0.1:{port}"
    settings = load(AgentSettings, {}, agent_country="DE", nats_url=url)
    with capture_logs() as logs:
        nc = await _connect(settings, "DE-secret-test", asyncio.Event())
        assert nc is not None
        await nc.close()
    assert logs[0]["event"] == "nats_connected"
    assert logs[0]["server"] == f"127.0.0.1:{port}"
    assert_no_userinfo(logs, user, password)


async def test_a_refused_nats_password_is_not_logged_either(
    nats_with_password: tuple[int, str, str],
) -> None:
    port, user, _ = nats_with_password
    wrong = f"Wrong-{uuid.uuid4().hex}"
    url = f"nats://{user}:{wrong}@127.0.0.1:{port}"
    settings = load(AgentSettings, {}, agent_country="DE", nats_url=url)
    stop = asyncio.Event()
    with capture_logs() as logs:
        connecting = asyncio.create_task(_connect(settings, "DE-secret-test", stop))
        await until(lambda: any(e["event"] == "nats_error" for e in logs), within=10)  # refused
        stop.set()
        assert await asyncio.wait_for(connecting, 5) is None
    assert any(e["event"] == "nats_error" for e in logs)
    assert_no_userinfo(logs, user, wrong)
