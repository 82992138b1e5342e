"""Job secrets sealed to their country, on the controller's side: what a job on `mon.jobs.CC`
holds for anyone who reads it, and what happens where a country has no key. Real PostgreSQL,
NATS and the API; the jobs are opened with the country's private key as its agents open them."""

import json
import uuid
from typing import Any, cast

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from shared.messages import ImapCheckJob, Pop3CheckJob, SmtpCheckJob
from shared.sealing import OpeningKeys, SealingError
from shared.subjects import JOBS_STREAM, jobs_subject
from testkit.sealing import KeyRing
from tests.api.helpers import IMAP, SMTP, create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_scheduler import make_due


def credentials(kind: str) -> tuple[str, str, dict[str, Any]]:
    """A user and a password no other test uses, and the monitor fields that carry them."""
    user, password = f"user-{uuid.uuid4().hex}@example.com", f"pw-{uuid.uuid4().hex}"
    if kind == "smtp":
        return user, password, {"smtpConfig": {"auth": {"user": user, "pass": password}}}
    config = {"protocol": kind, "user": user, "password": password, "tls": True}
    return user, password, {"imapPopConfig": config}


async def raw_jobs(js: JetStreamContext, cc: str) -> list[bytes]:
    """The bytes stored on `mon.jobs.CC`, as anyone allowed to read JOBS gets them."""
    found: list[bytes] = []
    seq = 0
    while True:
        try:
            msg = await js.get_msg(JOBS_STREAM, seq=seq + 1, subject=jobs_subject(cc), next=True)
        except NotFoundError:
            return found
        assert msg.data is not None and msg.seq is not None
        found.append(msg.data)
        seq = msg.seq


@pytest.mark.parametrize("kind", ["smtp", "imap", "pop3"])
async def test_a_credentialed_job_on_the_wire_holds_neither_password_nor_user(
    kind: str,
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    seal_keys: KeyRing,
    nc: NATS,
) -> None:
    """A live subscriber of `mon.jobs.CC` and a reader of the JOBS stream see the config sealed
    to CC's key and the type's default config; CC's private key opens the real one."""
    (cc,) = countries.take()
    await countries.live(cc)
    user, password, fields = credentials(kind)
    monitor = await create(
        api, org, "smtp" if kind == "smtp" else "imap", allowedCheckCountryCodes=[cc], **fields
    )
    seen: list[bytes] = []

    async def on_job(msg: Msg) -> None:
        seen.append(msg.data)

    sub = await nc.subscribe(jobs_subject(cc), cb=on_job)
    await nc.flush()
    await make_due(pipe_pool, monitor["publicId"])
    with capture_logs() as logs:
        assert await pipeline.scheduler.tick() == 1
    await nc.flush()
    await sub.unsubscribe()
    stored = await raw_jobs(pipeline.js, cc)
    assert len(seen) == len(stored) == 1
    for raw in (seen[0], stored[0]):
        assert password.encode() not in raw and user.encode() not in raw
        body = json.loads(raw)
        assert body["sealKeyId"] == seal_keys.key_id(cc)
        assert isinstance(body["sealedConfig"], str) and body["sealedConfig"]
    [(job, _)] = await countries.jobs(cc)
    opened = seal_keys.opened(job)
    if isinstance(opened, SmtpCheckJob):
        assert opened.config.auth is not None
        assert (opened.config.auth.user, opened.config.auth.password.reveal()) == (user, password)
    else:
        assert isinstance(opened, ImapCheckJob | Pop3CheckJob)
        assert (opened.config.user, opened.config.password.reveal()) == (user, password)
        assert (opened.config.protocol, opened.config.tls) == (kind, True)
    text = repr(logs)
    assert password not in text and user not in text and cast(str, job.sealed_config) not in text


async def test_a_job_without_credentials_travels_unsealed(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc], smtpConfig={"requireTls": True})
    await make_due(pipe_pool, monitor["publicId"])
    assert await pipeline.scheduler.tick() == 1
    [(job, _)] = await countries.jobs(cc)
    assert isinstance(job, SmtpCheckJob)
    assert (job.sealed_config, job.seal_key_id) == (None, None)
    assert job.config.require_tls and job.config.auth is None


async def test_every_job_is_sealed_anew_to_its_own_country(
    api: httpx.AsyncClient,
    org: Tenant,
    countries: Countries,
    seal_keys: KeyRing,
) -> None:
    """The same config sealed twice, or for two countries, never gives the same text (a sealed
    box has a fresh key each time), and one country's key does not open another's job."""
    a, b = countries.take(2)
    await countries.live(a)
    await countries.live(b)
    monitor = await create(api, org, allowedCheckCountryCodes=[a, b])
    url = f"{SMTP}/{monitor['publicId']}/trigger-check"
    for _ in range(2):
        assert (await api.post(url, headers=org.auth())).status_code == 202
    first, second = (job for job, _ in await countries.jobs(a))
    abroad = (await countries.jobs(b))[0][0]
    sealed = {first.sealed_config, second.sealed_config, abroad.sealed_config}
    assert len(sealed) == 3 and None not in sealed
    assert first.seal_key_id == second.seal_key_id == seal_keys.key_id(a)
    assert abroad.seal_key_id == seal_keys.key_id(b) != first.seal_key_id
    assert seal_keys.opened(first).config == seal_keys.opened(second).config
    assert seal_keys.opened(first).config == seal_keys.opened(abroad).config
    assert abroad.sealed_config is not None
    with pytest.raises(SealingError, match=f"sealed for key {abroad.seal_key_id}"):
        seal_keys.opening(a).open(abroad.sealed_config, abroad.seal_key_id)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_country_without_a_public_key_gets_no_credentialed_job_but_a_missed_round(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    seal_keys: KeyRing,
) -> None:
    """Never in clear: the round is stored `missed` / `no_seal_key` naming the missing file,
    logged and counted; a monitor without credentials still runs there."""
    (cc,) = countries.take()
    await countries.live(cc)
    seal_keys.remove(cc)
    user, password, fields = credentials("imap")
    locked = await create(api, org, "imap", allowedCheckCountryCodes=[cc], **fields)
    plain = await create(api, org, allowedCheckCountryCodes=[cc], smtpConfig={})
    await make_due(pipe_pool, locked["publicId"], plain["publicId"])
    before = value("mailprobe_no_seal_key_rounds_total", country=cc)
    with capture_logs() as logs:
        assert await pipeline.scheduler.tick() == 1
    [(job, _)] = await countries.jobs(cc)
    assert job.monitor_id == plain["publicId"]
    for raw in await raw_jobs(pipeline.js, cc):
        assert password.encode() not in raw and user.encode() not in raw
    assert value("mailprobe_no_seal_key_rounds_total", country=cc) == before + 1
    [line] = [e for e in logs if e["event"].startswith("no sealing key")]
    assert (line["country"], line["rounds"], line["log_level"]) == (cc, 1, "error")
    assert line["key_file"] == str(seal_keys.directory / f"{cc}.pub")

    r = await api.get(f"{IMAP}/{locked['publicId']}/results", headers=org.auth())
    [item] = r.json()["items"]
    assert (item["country"], item["status"], item["errorKind"]) == (cc, "missed", "no_seal_key")
    assert f"{cc}.pub is missing" in item["message"]
    assert str(seal_keys.directory) not in item["message"]  # no controller paths to tenants
    r = await api.post(f"{IMAP}/{locked['publicId']}/trigger-check", headers=org.auth())
    assert r.status_code == 202, r.text
    assert [(j["country"], j["status"]) for j in r.json()["jobs"]] == [(cc, "no_seal_key")]
    assert len(await countries.jobs(cc)) == 1


async def test_a_new_public_key_seals_the_next_round_without_a_restart(
    api: httpx.AsyncClient,
    org: Tenant,
    countries: Countries,
    seal_keys: KeyRing,
) -> None:
    """Rotation, the controller's step: the country's `CC.pub` is replaced; the next job is
    sealed to the new key, which the old private key does not open."""
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc])
    url = f"{SMTP}/{monitor['publicId']}/trigger-check"
    old_id = seal_keys.key_id(cc)
    old_private = seal_keys.private[cc]
    assert (await api.post(url, headers=org.auth())).status_code == 202
    seal_keys.add(cc)
    assert (await api.post(url, headers=org.auth())).status_code == 202
    before, after = (job for job, _ in await countries.jobs(cc))
    assert before.seal_key_id == old_id
    assert after.seal_key_id == seal_keys.key_id(cc) != old_id
    assert cast(SmtpCheckJob, seal_keys.opened(after)).config.auth is not None
    assert after.sealed_config is not None
    with pytest.raises(SealingError):
        OpeningKeys([old_private]).open(after.sealed_config, after.seal_key_id)
