"""`python -m controller tail`: results from the live stream, one line each, filtered by country
and monitor (the subject) and status, against a real NATS server."""

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NATS

from controller.cli import parser
from controller.tail import follow
from shared import embedded
from shared.messages import CheckResult, encode, encode_bundle
from shared.subjects import results_bundle_subject, results_subject
from shared.timefmt import iso_ms, utcnow
from testkit.serving import http_client
from tests.api.test_cli import ROOT
from tests.conftest import Tenant, make_tenant
from tests.pipeline.test_ingest_faults import Server


def result(country: str, monitor: str, status: str) -> CheckResult:
    now = iso_ms(utcnow())
    if status == "inconclusive":
        return CheckResult(
            job_id=str(uuid.uuid4()),
            monitor_id=monitor,
            monitor_type="smtp",
            country=country,
            agent_id=f"{country}-tail-test",
            scheduled_at=now,
            started_at=now,
            finished_at=now,
            status="inconclusive",
            error_kind="inconclusive",
            message="canary mx.canary.test:25 timed out too",
        )
    return CheckResult(
        job_id=str(uuid.uuid4()),
        monitor_id=monitor,
        monitor_type="smtp",
        country=country,
        agent_id=f"{country}-tail-test",
        scheduled_at=now,
        started_at=now,
        finished_at=now,
        status="up" if status == "up" else "down",
        error_kind=None if status == "up" else "refused",
        message="220 ready" if status == "up" else "connection refused",
        response_time_ms=12.0,
    )


async def lines(
    nats_url: str,
    filters: tuple[str | None, str | None, str | None],
    messages: list[tuple[str, bytes]],
) -> list[str]:
    """What `follow` with (country, monitor, status) prints for `messages` (subject, body)."""
    nc = await nats.connect(nats_url)
    seen: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(follow(nc, *filters, seen.append, stop))
    try:
        await asyncio.sleep(0.2)  # subscribed
        for subject, body in messages:
            await nc.publish(subject, body)
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
        await nc.close()
    return seen


def bundle(*results: tuple[str, str, str]) -> tuple[str, bytes]:
    """A bundle of results (country, monitor, status) from an agent of the first's country
    whose jobs allowed it (RESULT_BUNDLES)."""
    return results_bundle_subject(results[0][0]), encode_bundle(
        [encode(result(*r)) for r in results]
    )


async def test_filters_by_country_monitor_and_status(nats_url: str) -> None:
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    alone = [("TZ", mine, "up"), ("TZ", mine, "down"), ("UG", mine, "down"), ("TZ", other, "down")]
    seen = await lines(
        nats_url,
        ("TZ", mine, "down"),
        [
            *((results_subject(cc, "smtp", m), encode(result(cc, m, st))) for cc, m, st in alone),
            (results_subject("TZ", "smtp", mine), b"not json"),
            # The bundles' results are filtered alike.
            bundle(("TZ", other, "down"), ("TZ", mine, "up"), ("TZ", mine, "inconclusive")),
            bundle(("UG", mine, "down")),
            (results_bundle_subject("TZ"), b"[not json"),
        ],
    )
    [only] = seen
    assert f" TZ smtp {mine} down/refused 12ms connection refused" in only


async def test_a_bundles_results_come_one_line_each(nats_url: str) -> None:
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    seen = await lines(
        nats_url, ("TZ", None, None), [bundle(("TZ", other, "down"), ("TZ", mine, "up"))]
    )
    assert len(seen) == 2
    assert f" TZ smtp {other} down/refused" in seen[0] and f" TZ smtp {mine} up" in seen[1]


@pytest.mark.timeout(90)
async def test_the_command_runs_until_interrupted(nats_url: str) -> None:
    monitor = str(uuid.uuid4())
    env = {**os.environ, "NATS_URL": nats_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        "tail",
        "--monitor",
        monitor,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    nc = await nats.connect(nats_url)
    try:
        out = await _first_line(proc.stdout, nc, monitor)
    finally:
        await nc.close()
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 10)
    assert f"KE smtp {monitor} up 12ms 220 ready" in out.decode()
    assert proc.returncode == 0
    assert proc.stderr is not None  # it said it was listening, on stderr (stdout is results)
    said = (await proc.stderr.read()).decode()
    assert f"following mon.results.*.*.{monitor} on {nats_url}" in said, said
    assert "monitor names are not shown: set MAILPROBE_TOKEN" in said, said


async def _first_line(stdout: asyncio.StreamReader, nc: NATS, monitor: str) -> bytes:
    """The command's first line, publishing a KE result of `monitor` every 0.2 s until it has
    subscribed. Starting Python and importing the controller (and asking the API for a name)
    can take many seconds on a busy host: the bound is a deadline, not a number of tries."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    line = asyncio.ensure_future(stdout.readline())
    while not line.done():
        if loop.time() > deadline:
            line.cancel()
            raise AssertionError("tail printed nothing")
        await nc.publish(
            results_subject("KE", "smtp", monitor), encode(result("KE", monitor, "up"))
        )
        await asyncio.wait([line], timeout=0.2)
    return line.result()


async def test_status_inconclusive_is_a_filter_of_the_command(nats_url: str) -> None:
    """`tail --status inconclusive` is accepted and shows only the results an agent's own
    path made inconclusive."""
    args = parser().parse_args(["tail", "--status", "inconclusive"])
    assert args.status == "inconclusive"
    monitor = str(uuid.uuid4())
    nc = await nats.connect(nats_url)
    seen: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(follow(nc, "TZ", monitor, args.status, seen.append, stop))
    try:
        await asyncio.sleep(0.2)  # subscribed
        for status in ("up", "down", "inconclusive"):
            await nc.publish(
                results_subject("TZ", "smtp", monitor), encode(result("TZ", monitor, status))
            )
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
        await nc.close()
    [only] = seen
    assert f" TZ smtp {monitor} inconclusive/inconclusive - canary mx.canary.test:25" in only


async def _tail(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        "tail",
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _smtp_monitor(api_url: str, tenant: Tenant, name: str, customer: str) -> str:
    body = {"customerId": customer, "name": name, "hostname": "smtp.example.com"}
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as client:
        r = await client.post("/api/smtp-monitors", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["publicId"])


@pytest.mark.timeout(90)
async def test_a_monitor_is_followed_by_its_name(
    nats_url: str, api_url: str, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """`--monitor NAME` asks the API (with MAILPROBE_TOKEN) which monitor has that name, and
    follows that one; another organization's monitor of the same name is not the token's to see.
    With `--ids` each line shows the monitor's publicId beside its name."""
    mine = await _smtp_monitor(api_url, tenant, "Edge relay", tenant.customer_public_id)
    theirs = await make_tenant(pool)
    await _smtp_monitor(api_url, theirs, "Edge relay", theirs.customer_public_id)
    env = {
        "NATS_URL": nats_url,
        "MAILPROBE_API": api_url,
        "MAILPROBE_TOKEN": tenant.tokens["readonly"],
    }
    proc = await _tail("--monitor", "edge RELAY", "--ids", env=env)  # no exact match: any case
    assert proc.stdout is not None
    nc = await nats.connect(nats_url)
    try:
        out = await _first_line(proc.stdout, nc, mine)
    finally:
        await nc.close()
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 10)
    assert f'KE smtp {mine} "Edge relay" up 12ms 220 ready' in out.decode()


@pytest.mark.timeout(90)
async def test_every_line_names_its_monitor_when_the_token_may_read_it(
    nats_url: str, api_url: str, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """Without `--monitor`, each line names its monitor, asked of the API with MAILPROBE_TOKEN,
    quoted as a JSON string (a name's own quotes escaped, so it never runs into the status after
    it), and without its id (`--ids` adds it); another organization's monitor, whose name the
    token may not read, shows its id alone."""
    mine = await _smtp_monitor(api_url, tenant, 'Edge "relay" Zürich', tenant.customer_public_id)
    theirs = await make_tenant(pool)
    other = await _smtp_monitor(api_url, theirs, "Their relay", theirs.customer_public_id)
    env = {
        "NATS_URL": nats_url,
        "MAILPROBE_API": api_url,
        "MAILPROBE_TOKEN": tenant.tokens["readonly"],
    }
    proc = await _tail("--country", "KE", env=env)
    assert proc.stdout is not None and proc.stderr is not None
    nc = await nats.connect(nats_url)
    try:
        first = await _first_line(proc.stdout, nc, other)
        await nc.publish(results_subject("KE", "smtp", mine), encode(result("KE", mine, "up")))
        await nc.flush()
        while "Edge" not in (
            named := (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        ):
            pass
    finally:
        await nc.close()
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 10)
    assert f"KE smtp {other} up 12ms" in first.decode()
    assert 'KE smtp "Edge \\"relay\\" Zürich" up 12ms 220 ready' in named, named
    assert mine not in named, named
    assert "not shown" not in (await proc.stderr.read()).decode()


# Three command starts, each allowed 30 s on a loaded host.
@pytest.mark.timeout(120)
async def test_an_ambiguous_or_unknown_name_is_refused_naming_the_candidates(
    api_url: str, tenant: Tenant
) -> None:
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as client:
        r = await client.post("/api/customers", json={"name": "Second"})
    assert r.status_code == 201, r.text
    first = await _smtp_monitor(api_url, tenant, "Relay", tenant.customer_public_id)
    second = await _smtp_monitor(api_url, tenant, "Relay", r.json()["publicId"])
    await _smtp_monitor(api_url, tenant, "Relay 2", tenant.customer_public_id)  # not a match
    env = {"MAILPROBE_API": api_url, "MAILPROBE_TOKEN": tenant.tokens["admin"]}
    proc = await _tail("--monitor", "Relay", env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    said = err.decode()
    assert proc.returncode == 2 and out == b""
    assert "2 monitors are named 'Relay'; give one's public id to --monitor" in said, said
    assert first in said and second in said and "Relay 2" not in said
    proc = await _tail("--monitor", "Nobody", env=env)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "no monitor is named 'Nobody'" in err.decode()
    proc = await _tail("--monitor", "Relay", env={"MAILPROBE_API": api_url, "MAILPROBE_TOKEN": ""})
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and "set MAILPROBE_TOKEN" in err.decode()


async def _stderr_lines(proc: asyncio.subprocess.Process) -> list[str]:
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode().splitlines()


async def _failed_tries(port: int, n: int) -> None:
    """Until `n` connection attempts reached `port` while its server is down, each closed as
    soon as it is taken (no INFO: a failed try, as a refused one is)."""
    tried = 0
    enough = asyncio.Event()

    def close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal tried
        writer.close()
        tried += 1
        if tried >= n:
            enough.set()

    listener = await asyncio.start_server(close, "127.0.0.1", port)
    try:
        await asyncio.wait_for(enough.wait(), 60)
    finally:
        listener.close()
        await listener.wait_closed()


@pytest.mark.timeout(120)
async def test_an_outage_of_nats_is_one_reconnecting_line_and_one_reconnected(
    tmp_path: Path,
) -> None:
    """While its nats-server is down for several reconnect tries (a second apart),
    the command says once that it reconnects and once that it is back, with no traceback, and
    then follows results as before; a start with the server down says once that it waits."""
    server = Server(tmp_path / "nats")
    monitor = str(uuid.uuid4())
    try:
        proc = await _tail("--monitor", monitor, env={"NATS_URL": server.url})
        assert proc.stdout is not None
        nc = await nats.connect(server.url)
        try:
            await _first_line(proc.stdout, nc, monitor)
        finally:
            await nc.close()
        server.kill()
        await _failed_tries(server.port, 3)
        server.restart()
        nc = await nats.connect(server.url)
        try:
            out = await _first_line(proc.stdout, nc, monitor)
        finally:
            await nc.close()
        assert f"KE smtp {monitor} up" in out.decode()
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 10)
        said = await _stderr_lines(proc)
        assert said[1].startswith("monitor names are not shown: set MAILPROBE_TOKEN"), said
        assert said[2:] == [
            f"lost NATS at {server.url}; reconnecting (Ctrl-C stops)",
            f"reconnected to NATS at {server.url}",
        ], said
        assert proc.returncode == 0

        server.kill()
        proc = await _tail("--monitor", monitor, env={"NATS_URL": server.url})
        await _failed_tries(server.port, 3)
        server.restart()
        assert proc.stdout is not None
        nc = await nats.connect(server.url)
        try:
            await _first_line(proc.stdout, nc, monitor)
        finally:
            await nc.close()
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 10)
        said = await _stderr_lines(proc)
        assert len(said) == 3 and "Traceback" not in "\n".join(said), said
        assert said[0].startswith(f"cannot reach NATS at {server.url} ("), said
        assert said[0].endswith("); trying until it answers (Ctrl-C stops)"), said
        assert said[1].startswith("following "), said
    finally:
        embedded.stop(server.proc)


async def test_the_nats_password_in_its_url_is_never_printed() -> None:
    """A start with the server down says once that it waits, naming the server without the
    `user:password@` of its URL."""
    url = f"nats://probe:tail-s3cret-pw@127.0.0.1:{embedded.free_port()}"
    proc = await _tail("--monitor", str(uuid.uuid4()), env={"NATS_URL": url})
    assert proc.stderr is not None
    try:
        said = await asyncio.wait_for(proc.stderr.readline(), 10)
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.communicate()
    assert b"cannot reach NATS at nats://" in said and b"127.0.0.1" in said, said
    assert b"tail-s3cret-pw" not in said and b"probe" not in said, said
