"""Every kind's secrets, from the one place they are declared (controller/monitors/kinds.py, and
the `Secret` fields of its config Struct), on every surface: masked in the API's responses,
stored sealed, opened into the job (which travels sealed to its country), never in a repr or a
log line, redacted from what servers echo, bound to the user they were given with, and named as
an `{env: NAME}` reference by export. A secret a kind declares that some surface misses fails
here. (The SQL trigger ending a login back-off on new credentials is held to the same paths by
tests/alerting/test_login_backoff.py.)"""

import copy
import uuid
from collections.abc import Mapping
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest

from agent.probers.redact import job_secrets, publishable
from controller.ascode.plan import Current, export
from controller.monitors import secret_binding
from controller.monitors import store as monitors
from controller.monitors.kinds import KINDS, Kind
from controller.scheduling.job_config import job_config
from controller.secrets.box import SealedSecret, SecretBox
from controller.secrets.seal_keys import carries_credentials
from controller.settings import ControllerSettings
from controller.web.api.monitor_kinds import api_of
from shared.logging import _dumps
from shared.messages import (
    JOB_TYPES,
    SECRET_MASK,
    MonitorType,
    SealedConfig,
    encode,
    encode_sealed,
)
from shared.secret import Secret, secret_paths, secrets_in
from tests.api.helpers import opened
from tests.conftest import Tenant

IDS = [k.name for k in KINDS]


def _at(config: Any, path: str) -> Any:
    for step in path.split("."):
        config = config.get(step) if isinstance(config, dict) else None
    return config


def _put(config: dict[str, Any], path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    for step in parents:
        config = config.setdefault(step, {})
    config[leaf] = value


def plaintexts(kind: Kind) -> dict[str, str]:
    """A distinct secret for each path the kind declares."""
    return {
        path: f"pw-{kind.name}-{i}-{uuid.uuid4().hex[:8]}" for i, path in enumerate(kind.secrets)
    }


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_kinds_declared_secrets_are_its_config_types_secret_fields(kind: Kind) -> None:
    """One declaration: the kind's login paths (stored secrets, and the access tokens only jobs
    carry) name exactly the fields its config Struct types `Secret`, and each secret is bound to
    a user path of the same login."""
    assert {wire for _, wire in secret_paths(kind.config)} == {*kind.secrets, *kind.tokens}
    assert all(
        login.user.rpartition(".")[0] == login.secret.rpartition(".")[0] for login in kind.logins
    )


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
async def test_every_declared_secret_is_masked_sealed_bound_redacted_and_exported(
    kind: Kind,
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
) -> None:
    secrets = plaintexts(kind)
    body = copy.deepcopy(cast(dict[str, Any], api_of(kind).create_examples[0].value))
    body["customerId"] = tenant.customer_public_id
    for path, plain in secrets.items():
        _put(body[kind.config_key], path, plain)
    r = await http.post(api_of(kind).path, json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    pid = r.json()["publicId"]

    # Masked in every response: create, read, list.
    listed = await http.get(api_of(kind).path, headers=tenant.auth("readonly"))
    got = await http.get(f"{api_of(kind).path}/{pid}", headers=tenant.auth("readonly"))
    for response in (r, got, listed):
        assert response.status_code in (200, 201), response.text
        assert not any(plain in response.text for plain in secrets.values())
    for shown in (r.json(), got.json()):
        for path in kind.secrets:
            assert _at(shown[kind.config_key], path) == SECRET_MASK
            assert _at(shown["config"], path) == SECRET_MASK

    # Stored sealed; read back as SealedSecret; opened into the job's config only.
    box = SecretBox(settings.secrets.secrets_key or "")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {monitors.COLUMNS} FROM monitors WHERE public_id = $1::uuid", pid
        )
    assert row is not None
    for path, plain in secrets.items():
        assert opened(box, _at(row["config"], path)) == plain
    assert not any(plain in str(row["config"]) for plain in secrets.values())
    monitor = monitors.decode(row)
    stored = {path: s for path, s in secrets_in(monitor.config) if s}
    assert set(stored) == set(kind.secrets)
    assert all(isinstance(s, SealedSecret) for s in stored.values())
    monitor_type = cast(MonitorType, monitor.type)  # KINDS: the checked kinds, no heartbeat
    config = job_config(monitor_type, row["config"], box)
    assert {path: s.reveal() for path, s in secrets_in(config) if s} == secrets
    assert carries_credentials(config)

    # The job: its own config carries no secret; the sealed one (opened by the agent) does.
    job = JOB_TYPES[monitor_type](
        job_id="j",
        monitor_id=pid,
        hostname=monitor.hostname,
        country="DE",
        scheduled_at="2024-01-01T00:00:00.000Z",
        expires_at="2024-01-01T00:01:00.000Z",
        sealed_config="sealed",
        seal_key_id="k",
    )
    assert not any(plain in encode(job).decode() for plain in secrets.values())
    inner = SealedConfig(monitor_id=pid, hostname=monitor.hostname, port=25, config=config)
    assert all(plain in encode_sealed(inner).decode() for plain in secrets.values())

    # Never in a repr or a log line (reprs and the JSON log renderer show the mask).
    agent_job = msgspec.structs.replace(job, config=config)
    for shown_text in (
        repr(monitor),
        repr(config),
        repr(agent_job),
        str(config),
        _dumps({"event": "x", "config": config, "job": agent_job, "monitor": monitor}),
    ):
        assert not any(plain in shown_text for plain in secrets.values()), shown_text

    # Redacted from what a server echoes back.
    echoed = " ".join(f"NO {plain}" for plain in secrets.values())
    assert set(secrets.values()) <= set(job_secrets(agent_job))
    assert not any(
        plain in publishable(echoed, job_secrets(agent_job)) for plain in secrets.values()
    )

    # Bound: another user name with the kept secret moves it, naming that user's path.
    # a Record reads as a Mapping; asyncpg's stubs do not declare it one
    stored_target = secret_binding.Target.of(cast(Mapping[str, object], row))
    for login in kind.logins:
        changed = copy.deepcopy(dict(row["config"]))
        _put(changed, login.user, "someone-else@example.org")
        moved = secret_binding.moved_each(
            stored_target, secret_binding.Target.of({**row, "config": changed})
        )
        assert login.user in moved[login.secret]

    # Named in export: each secret an {env: NAME} reference, one name per secret.
    listed_item = next(i for i in listed.json()["items"] if i["publicId"] == pid)
    doc: dict[str, Any] = export("customer", [Current.of(kind.name, listed_item)])
    exported = doc["monitors"][0][kind.config_key]
    names = [_at(exported, path) for path in kind.secrets]
    assert all(isinstance(n, dict) and set(n) == {"env"} for n in names), exported
    assert len({n["env"] for n in names}) == len(names)


def test_a_secret_shows_only_the_mask_and_encodes_as_its_text() -> None:
    secret = Secret("hunter2")
    assert repr(secret) == repr(SECRET_MASK) and str(secret) == f"{secret}" == SECRET_MASK
    assert secret == Secret("hunter2") != Secret("other")
    assert Secret("x") != SealedSecret("x")  # a sealed text is not the opened one
    assert not Secret() and secret
