"""A secret sent again with the value already stored changes nothing (native API): its
ciphertext stays, a login back-off goes on (the credentials are not new), and a PATCH that
changes nothing else writes nothing. `apply` relies on it to send every secret on every run;
a different value is stored and ends the back-off as before."""

import asyncpg
import httpx

from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from tests.api.helpers import SMTP, create, opened, stored_row
from tests.conftest import Tenant


def config(password: str) -> dict[str, object]:
    return {"requireTls": True, "auth": {"user": "probe", "pass": password}}


async def backed_off(pool: asyncpg.Pool, public_id: str) -> bool:
    async with pool.acquire() as conn:
        found: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM login_backoff b JOIN monitors m ON m.id = b.monitor_id"
            " WHERE m.public_id = $1::uuid)",
            public_id,
        )
    return found


async def back_off(pool: asyncpg.Pool, public_id: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO login_backoff (monitor_id, failures, since, retry_at)"
            " SELECT id, 3, now(), now() + interval '1 hour' FROM monitors"
            " WHERE public_id = $1::uuid",
            public_id,
        )


async def test_the_same_secret_sent_again_changes_nothing_and_a_new_one_is_stored(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    created = await create(http, tenant, smtpConfig=config("first-s3cret"))
    pid, url = created["publicId"], f"{SMTP}/{created['publicId']}"
    before = await stored_row(pool, pid)
    await back_off(pool, pid)

    r = await http.patch(url, json={"smtpConfig": config("first-s3cret")}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert r.json()["updatedAt"] == created["updatedAt"]  # no write
    assert (await stored_row(pool, pid))["config_text"] == before["config_text"]
    assert await backed_off(pool, pid)  # not new credentials: logins stay slowed

    # Sent again with a move: allowed (the secret came with it), still the stored ciphertext.
    r = await http.patch(
        url,
        json={"hostname": "smtp2.example.com", "smtpConfig": config("first-s3cret")},
        headers=tenant.auth("member"),
    )
    assert r.status_code == 200, r.text
    after = await stored_row(pool, pid)
    assert after["hostname"] == "smtp2.example.com"
    assert after["config"]["auth"]["pass"] == before["config"]["auth"]["pass"]

    r = await http.patch(url, json={"smtpConfig": config("second-s3cret")}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    box = SecretBox(settings.secrets.secrets_key or "")
    assert opened(box, (await stored_row(pool, pid))["config"]["auth"]["pass"]) == "second-s3cret"
    assert not await backed_off(pool, pid)  # new credentials end the back-off
