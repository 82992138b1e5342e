"""`python -m controller serve` as operators run it: every role in one process, real PostgreSQL
and NATS, ready over HTTP, a round recorded, and a clean stop on SIGTERM."""

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from controller.secrets.box import generate_key
from shared import embedded
from tests.conftest import scratch_database

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


async def test_serve_runs_all_roles_and_stops_cleanly(scratch: str, nats_url: str) -> None:
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
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=5, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            deadline = time.monotonic() + 20
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
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
