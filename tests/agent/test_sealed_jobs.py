"""Sealed jobs on the agent's side, with the real NATS and a real IMAP server over TLS: an agent
opens its country's jobs in memory and logs in with them; a job it cannot open ends as an
`internal` result saying which key it needed, settled, with nothing secret in any log line."""

import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import msgspec
import pytest
import trustme
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts, build_ssl_contexts
from shared.messages import CheckJob, ImapPopConfig, TlsOptions
from shared.sealing import OpeningKeys
from shared.secret import Secret
from testkit.peers.imap import ImapPeer
from testkit.sealing import KeyRing
from tests.agent.helpers import (
    SmtpLikePeer,
    capture,
    job_for,
    jobs_left,
    publish_job,
    result_count,
    results,
    unacked,
    until_async,
    worker,
)
from tests.agent.test_main import ROOT, agent_env, start_agent, stop_agent
from tests.conftest import PROCESS_START_S


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def trusting(ca: trustme.CA) -> Iterator[SslContexts]:
    """The agent's TLS contexts with the test CA trusted."""
    yield build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())


@pytest.fixture
def user() -> tuple[str, str]:
    return f"box-{uuid.uuid4().hex[:8]}@example.com", f"pw-{uuid.uuid4().hex}"


def imap_job(country: str, port: int, user: tuple[str, str]) -> CheckJob:
    """A login to the IMAP server on localhost:`port`, TLS from the first byte."""
    config = ImapPopConfig(user=user[0], password=Secret(user[1]), tls=True)
    return job_for(country, port, "imap", config=config, hostname="localhost")


def secrets_in(logs: list[dict[str, object]], *texts: str) -> list[str]:
    rendered = repr(logs)
    return [t for t in texts if t in rendered]


async def test_an_agent_opens_its_countrys_sealed_job_and_logs_in_with_it(
    js: JetStreamContext,
    nc: NATS,
    country: str,
    trusting: SslContexts,
    server_tls: ssl.SSLContext,
    user: tuple[str, str],
    tmp_path: Path,
) -> None:
    ring = KeyRing(tmp_path, [country])
    async with ImapPeer({user[0]: user[1]}, server_tls) as peer:
        job = ring.sealed(imap_job(country, peer.port, user))
        assert job.sealed_config is not None
        await publish_job(js, job)
        with capture() as logs:
            await worker(nc, country, trusting, seal_keys=ring.opening(country)).run(burst=True)
    [result] = await results(js, country)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert "LOGIN" in peer.commands
    assert await unacked(js, country) == (0, 0)
    assert secrets_in(logs, *user, job.sealed_config) == []
    [started] = [e for e in logs if e["event"] == "agent_started"]
    assert started["seal_key_ids"] == [ring.key_id(country)]


async def test_a_job_sealed_to_another_countrys_key_ends_internal_naming_both_keys(
    js: JetStreamContext,
    nc: NATS,
    country: str,
    other_country: str,
    trusting: SslContexts,
    server_tls: ssl.SSLContext,
    user: tuple[str, str],
    tmp_path: Path,
) -> None:
    """Say US's agents got a job sealed for DE: they cannot open it, the server never sees a
    connection, and the job is settled with a result that says why."""
    ring = KeyRing(tmp_path, [country, other_country])
    async with ImapPeer({user[0]: user[1]}, server_tls) as peer:
        job = ring.sealed(imap_job(country, peer.port, user), other_country)
        await publish_job(js, job)
        with capture() as logs:
            await worker(nc, country, trusting, seal_keys=ring.opening(country)).run(burst=True)
    [result] = await results(js, country)
    assert (result.status, result.error_kind) == ("down", "internal")
    assert result.message == (
        f"cannot open the job's sealed config: sealed for key {ring.key_id(other_country)},"
        f" this agent holds {ring.key_id(country)}"
    )
    assert peer.commands == []
    assert await jobs_left(js, country) == 0 and await unacked(js, country) == (0, 0)
    [line] = [e for e in logs if e["event"] == "job_not_opened"]
    assert line["job_id"] == job.job_id and line["log_level"] == "error"
    assert job.sealed_config is not None
    assert secrets_in(logs, *user, job.sealed_config) == []


async def test_an_agent_without_keys_runs_unsealed_jobs_and_reports_sealed_ones(
    js: JetStreamContext,
    nc: NATS,
    country: str,
    ssl_contexts: SslContexts,
    user: tuple[str, str],
    tmp_path: Path,
) -> None:
    ring = KeyRing(tmp_path, [country])
    async with SmtpLikePeer() as peer:
        plain = job_for(country, peer.port)
        sealed = ring.sealed(imap_job(country, peer.port, user))
        for job in (plain, sealed):
            await publish_job(js, job)
        await worker(nc, country, ssl_contexts).run(burst=True)
    found = {r.job_id: r for r in await results(js, country)}
    assert (found[plain.job_id].status, found[plain.job_id].error_kind) == ("up", None)
    assert found[sealed.job_id].error_kind == "internal"
    assert found[sealed.job_id].message.endswith("this agent holds none")
    assert peer.connections == 1  # only the unsealed job's
    assert await unacked(js, country) == (0, 0)


async def test_during_a_rotation_an_agent_with_both_keys_opens_jobs_sealed_to_either(
    js: JetStreamContext,
    nc: NATS,
    country: str,
    trusting: SslContexts,
    server_tls: ssl.SSLContext,
    user: tuple[str, str],
    tmp_path: Path,
) -> None:
    ring = KeyRing(tmp_path, [country])
    old = ring.private[country]
    async with ImapPeer({user[0]: user[1]}, server_tls) as peer:
        before = ring.sealed(imap_job(country, peer.port, user))
        new = ring.add(country)
        after = ring.sealed(imap_job(country, peer.port, user))
        assert before.seal_key_id != after.seal_key_id
        for job in (before, after):
            await publish_job(js, job)
        keys = OpeningKeys([old, new])
        await worker(nc, country, trusting, seal_keys=keys).run(burst=True)
    found = {r.job_id: (r.status, r.error_kind) for r in await results(js, country)}
    assert found == {before.job_id: ("up", None), after.job_id: ("up", None)}
    assert peer.commands.count("LOGIN") == 2


@pytest.mark.parametrize("change", ["port", "hostname", "monitor_id"])
async def test_a_sealed_config_copied_into_a_job_for_another_target_is_not_used(
    js: JetStreamContext,
    nc: NATS,
    country: str,
    trusting: SslContexts,
    server_tls: ssl.SSLContext,
    user: tuple[str, str],
    tmp_path: Path,
    change: str,
) -> None:
    """Whoever could write a job cannot pair a genuine sealed config with a host of theirs:
    the config names its monitor, host and port inside the seal, and the agent checks them."""
    ring = KeyRing(tmp_path, [country])
    async with (
        ImapPeer({user[0]: user[1]}, server_tls) as owner,
        ImapPeer({}, server_tls) as other,
    ):
        genuine = ring.sealed(imap_job(country, owner.port, user))
        targets: dict[str, dict[str, object]] = {
            "port": {"port": other.port},
            "hostname": {"hostname": "127.0.0.1"},
            "monitor_id": {"monitor_id": str(uuid.uuid4())},
        }
        target = targets[change]
        forged = msgspec.structs.replace(genuine, job_id=f"job-{uuid.uuid4()}", **target)
        await publish_job(js, forged)
        with capture() as logs:
            await worker(nc, country, trusting, seal_keys=ring.opening(country)).run(burst=True)
    [result] = await results(js, country)
    assert (result.status, result.error_kind) == ("down", "internal")
    assert "bound to another monitor, host or port" in result.message
    assert owner.commands == [] and other.commands == []
    assert await unacked(js, country) == (0, 0)
    assert genuine.sealed_config is not None
    assert secrets_in(logs, *user, genuine.sealed_config) == []


@pytest.mark.parametrize(
    ("sealed", "message"),
    [
        ("bm90IGEgc2VhbGVkIGJveA==", "sealed value does not open with key {key}"),
        ("{not-a-config}", "the job's sealed config (key {key}) is not a valid imap config"),
    ],
)
async def test_a_corrupt_sealed_config_ends_internal_and_is_never_logged(
    js: JetStreamContext,
    nc: NATS,
    country: str,
    ssl_contexts: SslContexts,
    user: tuple[str, str],
    tmp_path: Path,
    sealed: str,
    message: str,
) -> None:
    ring = KeyRing(tmp_path, [country])
    key = ring.public(country)
    text = key.seal(b"[1, 2, 3]") if sealed == "{not-a-config}" else sealed
    job = msgspec.structs.replace(
        ring.sealed(imap_job(country, 1, user)), sealed_config=text, seal_key_id=key.id
    )
    await publish_job(js, job)
    with capture() as logs:
        await worker(nc, country, ssl_contexts, seal_keys=ring.opening(country)).run(burst=True)
    [result] = await results(js, country)
    assert result.error_kind == "internal"
    assert result.message.endswith(message.format(key=key.id))
    assert await unacked(js, country) == (0, 0)
    assert secrets_in(logs, text) == []


async def test_the_agent_process_loads_its_key_file_and_opens_jobs_sealed_to_either_key(
    nats_url: str,
    js: JetStreamContext,
    country: str,
    server_tls: ssl.SSLContext,
    user: tuple[str, str],
    tmp_path: Path,
) -> None:
    """`python -m agent` with AGENT_SEAL_KEYS_FILE holding the old and the new key (a
    rotation). The process trusts the system's CAs only, so these jobs do not verify the test
    server's certificate."""
    ring = KeyRing(tmp_path / "keys", [country])
    old = ring.private[country]
    keys_file = tmp_path / f"{country}.keys"
    async with ImapPeer({user[0]: user[1]}, server_tls) as peer:
        config = ImapPopConfig(
            user=user[0],
            password=Secret(user[1]),
            tls=True,
            tls_options=TlsOptions(reject_unauthorized=False),
        )
        plain = job_for(country, peer.port, "imap", config=config, hostname="localhost")
        before = ring.sealed(plain)
        keys_file.write_text(f"{old}\n{ring.add(country)}\n")
        after = ring.sealed(msgspec.structs.replace(plain, job_id=f"job-{uuid.uuid4()}"))
        for job in (before, after):
            await publish_job(js, job)
        proc = await start_agent(
            "--country",
            country,
            NATS_URL=nats_url,
            AGENT_ALLOW_PRIVATE_TARGETS="true",
            AGENT_SEAL_KEYS_FILE=str(keys_file),
        )
        try:
            # the agent process starts, then runs both
            await until_async(lambda: result_count(js, country, 2), within=PROCESS_START_S)
        finally:
            logs = await stop_agent(proc)
    found = {r.job_id: (r.status, r.error_kind) for r in await results(js, country)}
    assert found == {before.job_id: ("up", None), after.job_id: ("up", None)}
    [started] = [line for line in logs if line["event"] == "agent_started"]
    sealed_with = cast(list[str], [before.seal_key_id, after.seal_key_id])  # both sealed: set
    assert sorted(started["seal_key_ids"]) == sorted(sealed_with)
    text = "\n".join(map(str, logs))
    assert old not in text and ring.private[country] not in text and user[1] not in text


def test_an_unreadable_key_file_stops_the_agent_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--country", "DE"],
        env=agent_env(AGENT_SEAL_KEYS_FILE=str(tmp_path / "missing.keys")),
        cwd=ROOT,
        capture_output=True,
        timeout=PROCESS_START_S,
        check=False,
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.startswith("error: setting AGENT_SEAL_KEYS_FILE cannot be read:")
    assert err.count("\n") == 1
