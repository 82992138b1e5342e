"""The write path (`controller.monitors.writes`) takes a complete write and calls nothing back:
the surface has read the monitor, authorized the caller and converted the body before it calls
in. A write built on a monitor that has changed since is refused (`Stale`) rather than written
over the change; a moved secret comes back as `SecretMoved`, which each surface names its way.
"""

import dataclasses
import inspect
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import httpx
import pytest

from controller.monitors import fair_use
from controller.monitors.errors import SecretMoved, Stale
from controller.monitors.kinds import SMTP
from controller.monitors.write_model import KEEP, SmtpAuthIn, SmtpConfigIn, SmtpMonitorUpdate
from controller.monitors.writes import Lookup, MonitorWrites
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.clock import WALL, ManualClock
from tests.api.helpers import PATHS, minimal_body
from tests.conftest import Tenant


def test_the_write_path_takes_no_callback() -> None:
    """No public method of `MonitorWrites` takes a callable: what a surface decides (who may,
    what the body says, how a refusal reads) is decided before the call, not inside the
    write's transaction."""
    for name, method in inspect.getmembers(MonitorWrites, inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(method)
        for param, hint in hints.items():
            assert typing.get_origin(hint) is not Callable and hint is not Callable, (name, param)
            assert "Callable" not in str(hint) and "Awaitable" not in str(hint), (name, param)


@pytest.fixture
def writes(pool: asyncpg.Pool, settings: ControllerSettings) -> MonitorWrites:
    assert settings.secrets.secrets_key is not None
    return MonitorWrites(
        pool,
        SecretBox(settings.secrets.secrets_key),
        fair_use.Limits.of(settings.fair_use),
        clock=WALL,
    )


async def _created(http: httpx.AsyncClient, tenant: Tenant, **body: object) -> dict[str, object]:
    r = await http.post(PATHS["smtp"], json=minimal_body(tenant, **body), headers=tenant.auth())
    assert r.status_code == 201, r.text
    created: dict[str, object] = r.json()
    return created


async def test_a_write_built_on_a_monitor_changed_since_is_stale(
    http: httpx.AsyncClient, tenant: Tenant, writes: MonitorWrites
) -> None:
    monitor = await _created(http, tenant)
    lookup = Lookup(UUID(str(monitor["publicId"])), SMTP.types, tenant.org_id)
    read = await writes.get(lookup)
    url = f"{PATHS['smtp']}/{monitor['publicId']}"
    r = await http.patch(url, json={"name": "renamed meanwhile"}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    with pytest.raises(Stale):
        await writes.update(
            lookup, SmtpMonitorUpdate(check_interval=300), budget={}, read_at=read.updated_at
        )
    now = await writes.get(lookup)
    assert (now.name, now.check_interval) == ("renamed meanwhile", read.check_interval)
    done = await writes.update(
        lookup, SmtpMonitorUpdate(check_interval=300), budget={}, read_at=now.updated_at
    )
    assert (done.name, done.check_interval) == ("renamed meanwhile", 300)


async def test_a_moved_secret_comes_back_to_the_surface_by_path(
    http: httpx.AsyncClient, tenant: Tenant, writes: MonitorWrites
) -> None:
    auth = {"user": "probe", "pass": "s3cret"}
    monitor = await _created(http, tenant, smtpConfig={"auth": auth})
    lookup = Lookup(UUID(str(monitor["publicId"])), SMTP.types, tenant.org_id)
    moved_host = SmtpMonitorUpdate(
        hostname="elsewhere.example.net",
        smtp_config=SmtpConfigIn(auth=SmtpAuthIn(user="probe", password=KEEP)),
    )
    with pytest.raises(SecretMoved) as refused:
        await writes.update(lookup, moved_host, budget={})
    assert refused.value.each == {"auth.pass": ["hostname"]}
    assert (await writes.get(lookup)).hostname == monitor["hostname"]


async def test_a_write_is_stamped_by_the_clock_given_and_a_standing_clock_still_tells_stale(
    http: httpx.AsyncClient, tenant: Tenant, writes: MonitorWrites
) -> None:
    """`updated_at` is the writer's clock (issue 79), here a month's end; a write at the same
    instant as the one before still moves it (a microsecond on), so a write built on the
    monitor before either is `Stale`."""
    clock = ManualClock(datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC))
    at = dataclasses.replace(writes, clock=clock)
    monitor = await _created(http, tenant)
    lookup = Lookup(UUID(str(monitor["publicId"])), SMTP.types, tenant.org_id)
    read = await at.get(lookup)
    first = await at.update(lookup, SmtpMonitorUpdate(check_interval=300), budget={})
    assert first.updated_at == clock.now()
    second = await at.update(
        lookup, SmtpMonitorUpdate(check_interval=600), budget={}, read_at=first.updated_at
    )
    assert second.updated_at == clock.now() + timedelta(microseconds=1)
    with pytest.raises(Stale):
        await at.update(
            lookup, SmtpMonitorUpdate(check_interval=900), budget={}, read_at=first.updated_at
        )
    assert (await at.get(lookup)).updated_at != read.updated_at
