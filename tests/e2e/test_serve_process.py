"""`python -m controller serve` as operators run it: every role in one process, real PostgreSQL
and NATS, ready over HTTP, a round recorded, its sessions named by its roles, and a clean stop
on SIGTERM."""

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from controller.secrets.box import generate_key
from shared import embedded
from testkit.peers.slowpath import SlowPath
from testkit.serving import http_client
from tests.conftest import PROCESS_START_S, scratch_database

COUNTRY = "LI"  # no agent ever runs for it in the tests: its rounds are `no_agent`


@pytest.fixture
async def scratch(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url, "serve") as url:
        yield url


async def _run(*args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]


async def _serve(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """`serve` with its output in `log`, read at the end: a pipe nobody reads until then could
    fill and stop it."""
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "serve", env=env, stdout=out, stderr=out
        )


async def _stopped(proc: asyncio.subprocess.Process, within: float) -> None:
    """Wait up to `within` for `proc` to end, then kill it if it has not."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), timeout=within)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


# The pytest bound counts two process starts (PROCESS_START_S each), a round and the stop.
@pytest.mark.timeout(150)
async def test_serve_runs_all_roles_and_stops_cleanly(
    scratch: str, nats_url: str, tmp_path: Path
) -> None:
    port = embedded.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": scratch,
        "NATS_URL": nats_url,
        "SECRETS_KEY": generate_key(),
        "API_PORT": str(port),
        "LOG_FORMAT": "json",
    }
    token = await _run(
        "create-admin",
        "--org",
        "serve-test",
        "--email",
        "ops@example.com",
        "--password",
        "a long password",
        env=env,
    )
    # The api role's housekeeping (a worker `serve` runs) deletes expired tokens at its start.
    db = await asyncpg.connect(scratch)
    try:
        await db.execute(
            "INSERT INTO api_tokens (user_id, token_hash, expires_at)"
            " SELECT user_id, decode('00', 'hex'), now() - interval '1 hour' FROM api_tokens"
        )
    finally:
        await db.close()
    log = tmp_path / "serve.log"
    proc = await _serve(env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        async with http_client(
            base_url=base, timeout=5, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            deadline = time.monotonic() + PROCESS_START_S
            while True:
                try:
                    if (await http.get("/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not become ready"
                assert proc.returncode is None, "serve exited at start"
                await asyncio.sleep(0.2)
            customer = (await http.post("/api/customers", json={"name": "Ops"})).json()
            created = await http.post(
                "/api/smtp-monitors",
                json={
                    "customerId": customer["id"],
                    "name": "relay",
                    "hostname": "smtp.example.com",
                    "checkInterval": 10,
                    "timeoutSeconds": 5,
                    "allowedCheckCountryCodes": [COUNTRY],
                },
            )
            assert created.status_code == 201, created.text
            monitor = created.json()["publicId"]
            # The scheduler's first round finds no agent in LI and records it as such.
            deadline = time.monotonic() + 20
            while True:
                page = (await http.get(f"/api/smtp-monitors/{monitor}/results")).json()
                if page["items"]:
                    break
                assert time.monotonic() < deadline, "no round was recorded"
                await asyncio.sleep(0.3)
            first = page["items"][0]
            assert (first["country"], first["status"], first["errorKind"]) == (
                COUNTRY,
                "missed",
                "no_agent",
            )
            db = await asyncpg.connect(scratch)
            try:
                expired = "SELECT count(*) FROM api_tokens WHERE expires_at < now()"
                assert await db.fetchval(expired) == 0, "housekeeping did not run"
                assert await db.fetchval("SELECT count(*) FROM api_tokens") == 1
                # Its sessions say what they are, so an operator tells them apart (client
                # sessions only: an autovacuum worker of the fresh database names none).
                names = await db.fetch(
                    "SELECT DISTINCT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                )
                assert [r[0] for r in names] == [
                    "mailprobe controller alerter,api,ingester,scheduler ids3"
                ]
            finally:
                await db.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await _stopped(proc, 20)
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text


async def test_a_stop_asked_for_during_start_up_is_kept(
    scratch: str, nats_url: str, tmp_path: Path
) -> None:
    """SIGTERM while `serve` is still starting (its NATS is far: every request half a second
    late, so its start-up takes several seconds) cuts the start-up short: the process closes
    what it opened and exits 0 without serving. Before, the stop was taken by `serve`'s own
    handler and kept by nothing: the process went on to serve until a second signal."""
    host, _, port = nats_url.removeprefix("nats://").rpartition(":")
    async with SlowPath(host, int(port), delay_s=0.5) as far:
        env = {
            **os.environ,
            "DATABASE_URL": scratch,
            "NATS_URL": f"nats://127.0.0.1:{far.port}",
            "SECRETS_KEY": generate_key(),
            "API_PORT": str(embedded.free_port()),
            "LOG_FORMAT": "json",
        }
        log = tmp_path / "serve.log"
        proc = await _serve(env, log)
        stopping = 0.0  # killed at once unless it was asked to stop
        try:
            # Connecting to NATS: past the handler's install, short of serving.
            deadline = time.monotonic() + PROCESS_START_S
            while not far.accepted:
                assert proc.returncode is None, "serve exited at start"
                assert time.monotonic() < deadline, "serve never connected to NATS"
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            stopping = 40.0
        finally:
            await _stopped(proc, stopping)
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert "stop asked for during start-up: not serving" in text, text[-2000:]
    assert "Traceback" not in text
