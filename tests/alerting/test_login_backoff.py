"""Rejected credentials back the monitor's logins off (alerter side): the back-off is stored
and shown in the API, the owner is told once, the alerter does not count the countries whose
login was held, asks for no confirmation round meanwhile, and a login or new credentials (PATCH)
end it while another change does not."""

from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from controller.logins.backoff import HELD
from controller.monitors.kinds import KINDS, ROUNDTRIP, Kind
from shared.timefmt import utcnow
from tests.alerting.conftest import Rig
from tests.conftest import make_tenant

REJECTED = {"DE": "auth", "FR": "auth", "US": "auth"}


async def backoff(rig: Rig, m: asyncpg.Record) -> list[asyncpg.Record]:
    return await rig.fetch("SELECT * FROM login_backoff WHERE monitor_id = $1", m["id"])


async def held_round(rig: Rig, m: asyncpg.Record, at: datetime, login: dict[str, str]) -> None:
    """A round in back-off as the scheduler records it: `login` countries ran, the rest held."""
    await rig.round(m, 0, login, at=at)
    pid = str(m["public_id"])
    rows = [
        ResultRow.missed(
            m["public_id"], m["type"], cc, rig.job_ids.make(pid, cc, at), at, HELD, "held"
        )
        for cc in ("DE", "FR", "US")
        if cc not in login
    ]
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())


async def test_rejected_credentials_back_off_notify_once_and_show_in_the_api(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    first = rig.clock() - timedelta(seconds=150)
    await rig.round(m, 0, REJECTED, at=first)
    await rig.alerter.burst()
    (b,) = await backoff(rig, m)
    assert (b["failures"], b["since"], b["retry_at"]) == (1, first, first + timedelta(minutes=2))
    notes = [r for r in await rig.outbox_rows(m) if r["kind"] == "credentials"]
    assert sorted(n["channel"] for n in notes) == ["email", "sms"]
    mail = next(n for n in notes if n["channel"] == "email")
    assert mail["subject"] == "[mailprobe] Credentials rejected: Outbound relay"
    assert "so the account is not locked" in mail["body_text"]
    assert "DE, FR, US" in mail["body_text"]
    assert await rig.fetch("SELECT * FROM confirmation_rounds") == []  # no more wrong logins

    url = f"/api/smtp-monitors/{m['public_id']}/login-backoff"
    r = await api.get(url, headers=rig.tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backedOff"] is True and body["rejectedRounds"] == 1
    assert "credentials rejected" in body["reason"]
    assert body["nextLoginAt"].startswith((first + timedelta(minutes=2)).isoformat()[:19])
    other = await make_tenant(rig.pool)
    assert (await api.get(url, headers=other.auth())).status_code == 404

    # The retry: one country logs in, is rejected again; the held ones do not dilute it.
    retry = first + timedelta(minutes=2)
    await held_round(rig, m, retry, {"FR": "auth"})
    await rig.alerter.burst()
    (b,) = await backoff(rig, m)
    assert (b["failures"], b["retry_at"]) == (2, retry + timedelta(minutes=4))
    (incident,) = await rig.incidents(m)  # two failing rounds: down, for `auth`
    assert incident["cause_kind"] == "auth"
    kinds = sorted(r["kind"] for r in await rig.outbox_rows(m))
    assert kinds == ["credentials", "credentials", "down", "down"]  # told once

    # A change that is not the credentials keeps it; new credentials end it.
    patch = f"/api/smtp-monitors/{m['public_id']}"
    r = await api.patch(patch, headers=rig.tenant.auth("member"), json={"name": "Renamed"})
    assert r.status_code == 200, r.text
    assert len(await backoff(rig, m)) == 1
    r = await api.patch(
        patch,
        headers=rig.tenant.auth("member"),
        json={"smtpConfig": {"auth": {"user": "probe", "pass": "the-new-one"}}},
    )
    assert r.status_code == 200, r.text
    assert await backoff(rig, m) == []
    assert (await api.get(url, headers=rig.tenant.auth())).json() == {
        "monitorId": str(m["public_id"]),
        "backedOff": False,
        "reason": None,
        "rejectedRounds": 0,
        "since": None,
        "nextLoginAt": None,
        "loginCapped": False,
        "loginCap": None,
        "loginCappedSince": None,
    }


async def test_a_round_that_logs_in_ends_the_back_off(rig: Rig) -> None:
    m = await rig.monitor()
    first = rig.clock() - timedelta(seconds=150)
    await rig.round(m, 0, REJECTED, at=first)
    await rig.alerter.burst()
    assert len(await backoff(rig, m)) == 1
    await held_round(rig, m, first + timedelta(minutes=2), {"DE": "up"})
    await rig.alerter.burst()
    assert await backoff(rig, m) == []


async def test_other_failures_start_no_back_off(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.round(m, 0, {"DE": "refused", "FR": "timeout", "US": "tls"}, at=rig.clock())
    await rig.alerter.burst()
    assert await backoff(rig, m) == []


def _with(path: str, value: str, config: dict[str, Any]) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    node = config
    for step in parents:
        node = node.setdefault(step, {})
    node[leaf] = value
    return config


def _credentialed(kind: Kind) -> dict[str, Any]:
    """A stored config of `kind` with every credential the registry declares set."""
    config: dict[str, Any] = {}
    if kind is ROUNDTRIP:
        config = {"to": "probe@customer.test", "receive": {"hostname": "imap.customer.test"}}
    for path in kind.credentials:
        _with(path, "probe@customer.test" if path in [x.user for x in kind.logins] else "s", config)
    return config


@pytest.mark.parametrize(
    ("kind", "path"),
    [(k, p) for k in KINDS for p in (*k.credentials, *(g.oauth2 for g in k.logins))],
    ids=[f"{k.name}:{p}" for k in KINDS for p in (*k.credentials, *(g.oauth2 for g in k.logins))],
)
async def test_new_credentials_end_the_back_off_of_every_kind(
    rig: Rig, kind: Kind, path: str
) -> None:
    """Whoever writes a monitor, a new value at any credential path the registry declares for
    its kind ends the back-off, and another config change does not (a round trip's `send.auth`
    and `receive` user/password did not: the trigger compared only top-level keys)."""
    m = await rig.monitor(kind=kind.types[0], config=_credentialed(kind))
    first = rig.clock() - timedelta(seconds=150)
    await rig.round(m, 0, REJECTED, at=first)
    await rig.alerter.burst()
    assert len(await backoff(rig, m)) == 1
    await rig.pool.execute(
        """UPDATE monitors SET config = config || '{"slowAfterSeconds": 30}' WHERE id = $1""",
        m["id"],
    )
    assert len(await backoff(rig, m)) == 1
    await rig.pool.execute(
        "UPDATE monitors SET config = jsonb_set(config, $2::text[], '\"new\"') WHERE id = $1",
        m["id"],
        path.split("."),
    )
    assert await backoff(rig, m) == []


async def test_logins_rejected_in_their_servers_outage_are_told_only_if_they_outlast_it(
    rig: Rig,
) -> None:
    """A submission whose AUTH is rejected while its server's IMAP is down (issue 80: one page
    per broken server): the back-off is stored, not told, as the outage is paged already. A
    round that still has the logins rejected once the server is back tells it, once. A
    submission of another server is told at once."""
    box = {"user": "alice", "password": "x", "tls": True, "protocol": "imap"}
    login = {"auth": {"user": "alice", "pass": "x"}, "secure": True}
    imap = await rig.monitor(kind="imap", hostname="mail.example.test", port=993, config=box)
    submit = await rig.monitor(hostname="mail.example.test", port=465, config=login)
    elsewhere = await rig.monitor(hostname="relay.elsewhere.test", port=465, config=login)
    down = {"DE": "refused", "FR": "refused", "US": "refused"}
    up = {"DE": "up", "FR": "up", "US": "up"}

    async def told(m: asyncpg.Record) -> list[str]:
        return [r["channel"] for r in await rig.outbox_rows(m) if r["kind"] == "credentials"]

    for n in range(3):
        await rig.round(imap, n, down)
        await rig.alerter.burst()
    assert [i["ended_at"] for i in await rig.incidents(imap)] == [None]
    await rig.round(submit, 2, REJECTED)
    await rig.round(elsewhere, 2, REJECTED)
    await rig.alerter.burst()
    assert [b["failures"] for b in await backoff(rig, submit)] == [1]
    assert await told(submit) == []
    assert sorted(await told(elsewhere)) == ["email", "sms"]
    for n in range(3, 6):
        await rig.round(imap, n, up)
        await rig.alerter.burst()
    assert all(i["ended_at"] is not None for i in await rig.incidents(imap))
    await rig.round(submit, 6, REJECTED)
    await rig.alerter.burst()
    assert sorted(await told(submit)) == ["email", "sms"]
    await rig.round(submit, 8, REJECTED)
    await rig.alerter.burst()
    assert sorted(await told(submit)) == ["email", "sms"], "told once"
