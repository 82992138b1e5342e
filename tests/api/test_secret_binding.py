"""A stored secret is bound to where it is sent, over real HTTP: a change of server, port,
type, TLS settings or user name needs the secret in the same request (native API and /api/v3);
and issue 12's attack, replayed with a real agent and real SMTP servers on loopback, no longer
hands the owner's password to a member's server."""

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

import asyncpg
import httpx
import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from testkit.peers.smtp import SmtpPeer
from testkit.serving import http_client
from tests.alertsite.helpers import V3, as_error
from tests.api.helpers import IMAP, MASK, SMTP, assert_error, create, opened, stored_row
from tests.api.rig import Rig, pipeline_api
from tests.conftest import Tenant, make_tenant

COUNTRY = "FJ"  # the rig's agent; no other test uses it
OWNER_USER, OWNER_PASSWORD = "billing@owner.test", "OwnerOnly-7f3a9c"


class Mailbox(SmtpPeer):
    """An SMTP server offering STARTTLS (AUTH only after it) on `host`, keeping every
    connection and every (user, password) it was sent."""

    def __init__(self, host: str, tls: ssl.SSLContext, users: dict[str, str]) -> None:
        super().__init__(starttls=tls, users=users)
        self.host = host
        self.connections = 0
        self.logins: list[tuple[str, str]] = []

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login.decode(), data.password.decode()))
        return super()._authenticate(server, session, envelope, mechanism, data)

    def _protocol(self) -> Any:
        self.connections += 1
        return super()._protocol()

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
async def rig(
    settings: ControllerSettings, pool: asyncpg.Pool, nats_url: str, ca: trustme.CA
) -> AsyncIterator[Rig]:
    cadata = ca.cert_pem.bytes().decode()
    async with pipeline_api(settings, pool, nats_url, COUNTRY, agent_cadata=cadata) as rig:
        yield rig


@pytest.fixture
async def servers(ca: trustme.CA) -> AsyncIterator[tuple[Mailbox, Mailbox]]:
    """The owner's server on 127.0.0.1 and the member's own on 127.0.0.2, both with STARTTLS
    certificates the agent trusts (so TLS is never what stops a login here)."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "127.0.0.2").configure_cert(tls)
    async with (
        Mailbox("127.0.0.1", tls, {OWNER_USER: OWNER_PASSWORD}) as owner,
        Mailbox("127.0.0.2", tls, {}) as member,
    ):
        yield owner, member


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def trigger(api: httpx.AsyncClient, org: Tenant, public_id: str) -> None:
    r = await api.post(f"{SMTP}/{public_id}/trigger-check", headers=org.auth("member"))
    assert r.status_code == 202, r.text
    assert [j["status"] for j in r.json()["jobs"]] == ["queued"]


async def test_member_cannot_send_the_owners_password_to_their_own_server(
    rig: Rig, pool: asyncpg.Pool, servers: tuple[Mailbox, Mailbox]
) -> None:
    """Issue 12 #1: a member PATCHes the owner's monitor to their own server, sends the mask
    back and triggers a check. Now a 400; the check goes to the owner's server, and the
    member's server never sees a connection. With a password of their own it is allowed, and
    that is all their server gets."""
    owner_server, member_server = servers
    org = await make_tenant(pool)
    async with http_client(base_url=rig.url, timeout=10) as api:
        body = {
            "customerId": org.customer_public_id,
            "name": "billing relay",
            "hostname": "127.0.0.1",
            "port": owner_server.port,
            "checkInterval": 3600,
            "timeoutSeconds": 5,
            "allowedCheckCountryCodes": [COUNTRY],
            "smtpConfig": {"auth": {"user": OWNER_USER, "pass": OWNER_PASSWORD}},
        }
        r = await api.post(SMTP, json=body, headers=org.auth("owner"))
        assert r.status_code == 201, r.text
        pid = r.json()["publicId"]
        url = f"{SMTP}/{pid}"

        attack = {
            "hostname": "127.0.0.2",
            "port": member_server.port,
            "smtpConfig": {"requireTls": False, "auth": {"user": OWNER_USER, "pass": MASK}},
        }
        r = await api.patch(url, json=attack, headers=org.auth("member"))
        error = assert_error(r, 400, fields=["smtpConfig.auth.pass"], code="secret_required")
        assert "hostname, port" in error["message"]
        # Without any config, too: the stored one would travel with the new address.
        r = await api.patch(
            url,
            json={"hostname": "127.0.0.2", "port": member_server.port},
            headers=org.auth("member"),
        )
        assert_error(r, 400, fields=["smtpConfig.auth.pass"], code="secret_required")
        monitor = (await api.get(url, headers=org.auth())).json()
        assert (monitor["hostname"], monitor["port"]) == ("127.0.0.1", owner_server.port)

        await trigger(api, org, pid)
        await until(lambda: (OWNER_USER, OWNER_PASSWORD) in owner_server.logins)
        assert member_server.connections == 0 and member_server.logins == []

        # The password sent again is the member's own: allowed, and only it reaches them.
        attack["smtpConfig"] = {"auth": {"user": OWNER_USER, "pass": "member-own-guess"}}
        r = await api.patch(url, json=attack, headers=org.auth("member"))
        assert r.status_code == 200, r.text
        await trigger(api, org, pid)
        await until(lambda: bool(member_server.logins))
    # (the client tries each AUTH mechanism the server offers; every try had the member's own)
    assert set(member_server.logins) == {(OWNER_USER, "member-own-guess")}
    assert set(owner_server.logins) == {(OWNER_USER, OWNER_PASSWORD)}


async def test_the_same_attack_through_the_alertsite_api_is_refused(
    rig: Rig, pool: asyncpg.Pool, servers: tuple[Mailbox, Mailbox]
) -> None:
    """/api/v3: `hostname` and `port` of a monitor with a password, the password not sent (or
    sent as the mask) → 400 naming `password`; nothing reaches the member's server."""
    owner_server, member_server = servers
    org = await make_tenant(pool)
    async with http_client(base_url=rig.url, timeout=10) as api:
        body = {
            "billing_plancode": "UBM - A/A",
            "name": "billing relay",
            "hostname": "127.0.0.1",
            "port": owner_server.port,
            "interval": 60,
            "timeout": 5,
            "locations": [{"id": COUNTRY}],
            "login": OWNER_USER,
            "password": OWNER_PASSWORD,
        }
        r = await api.post(f"{V3}/monitors/email-smtp", json=body, headers=org.auth("owner"))
        assert r.status_code == 200, r.text
        monitor_id = r.json()["id"]
        url = f"{V3}/monitors/email-smtp/{monitor_id}"
        moves: list[dict[str, Any]] = [
            {"hostname": "127.0.0.2", "port": member_server.port},
            {"hostname": f"smtp://127.0.0.2:{member_server.port}", "password": MASK},
            {"login": "postmaster"},
            {"ssl": True},
        ]
        for move in moves:
            r = await api.patch(url, json=move, headers=org.auth("member"))
            message = as_error(r, 400)
            assert message.startswith("password must be sent again to change"), (move, message)
        async with pool.acquire() as conn:
            pid = str(
                await conn.fetchval("SELECT public_id FROM monitors WHERE id = $1", int(monitor_id))
            )
        await trigger(api, org, pid)
        await until(lambda: (OWNER_USER, OWNER_PASSWORD) in owner_server.logins)
        assert member_server.connections == 0

        r = await api.patch(
            url,
            json={"hostname": "127.0.0.2", "port": member_server.port, "password": "mine"},
            headers=org.auth("member"),
        )
        assert r.status_code == 200, r.text
        await trigger(api, org, pid)
        await until(lambda: bool(member_server.logins))
    assert set(member_server.logins) == {(OWNER_USER, "mine")}


# Each binding, one at a time, over HTTP (the session's API) --------------------------------

SMTP_STORED: dict[str, Any] = {
    "hostname": "smtp.example.com",
    "port": 587,
    "smtpConfig": {"auth": {"user": "billing", "pass": "stored-pass"}},
}
KEPT = {"user": "billing", "pass": MASK}
SMTP_MOVES: list[tuple[dict[str, Any], str]] = [
    ({"hostname": "evil.example"}, "hostname"),
    ({"port": 2525}, "port"),
    ({"smtpConfig": {"secure": True, "auth": KEPT}}, "smtpConfig.secure"),
    ({"smtpConfig": {"ignoreTls": True, "auth": KEPT}}, "smtpConfig.ignoreTls"),
    ({"smtpConfig": {"requireTLS": True, "auth": KEPT}}, "smtpConfig.requireTls"),
    (
        {"smtpConfig": {"tlsOptions": {"rejectUnauthorized": False}, "auth": KEPT}},
        "smtpConfig.tlsOptions.rejectUnauthorized",
    ),
    (
        {"smtpConfig": {"allowPlaintextAuth": True, "auth": KEPT}},
        "smtpConfig.allowPlaintextAuth",
    ),
    ({"smtpConfig": {"auth": {"user": "root", "pass": MASK}}}, "smtpConfig.auth.user"),
]


@pytest.mark.parametrize(("change", "named"), SMTP_MOVES, ids=[m[1] for m in SMTP_MOVES])
async def test_smtp_change_moving_the_password_needs_it_again(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    change: dict[str, Any],
    named: str,
) -> None:
    """400 naming `smtpConfig.auth.pass` (the message names what changed); nothing stored.
    The same change with the password sent again is a 200, and the new one is stored."""
    created = await create(http, tenant, role="member", **SMTP_STORED)
    url = f"{SMTP}/{created['publicId']}"
    r = await http.patch(url, json=change, headers=tenant.auth("member"))
    error = assert_error(r, 400, fields=["smtpConfig.auth.pass"], code="secret_required")
    assert f"to change {named}:" in error["message"]
    assert "stored-pass" not in r.text
    assert (await http.get(url, headers=tenant.auth())).json()["updatedAt"] == created["updatedAt"]

    resent = {**change, "smtpConfig": {**change.get("smtpConfig", {"auth": KEPT})}}
    resent["smtpConfig"]["auth"] = {**resent["smtpConfig"]["auth"], "pass": "sent-again"}
    r = await http.patch(url, json=resent, headers=tenant.auth("member"))
    assert r.status_code == 200, r.text
    row = await stored_row(pool, created["publicId"])
    assert opened(SecretBox(settings.secrets.secrets_key or ""), row["config"]["auth"]["pass"]) == (
        "sent-again"
    )


async def test_the_config_alias_names_the_secret_as_sent(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(http, tenant, **SMTP_STORED)
    r = await http.patch(
        f"{SMTP}/{created['publicId']}",
        json={"port": 465, "config": {"secure": True, "auth": KEPT}},
        headers=tenant.auth(),
    )
    error = assert_error(r, 400, fields=["config.auth.pass"], code="secret_required")
    assert "to change port, config.secure:" in error["message"]


async def test_restating_the_stored_target_keeps_the_secret(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """The same values, other spellings of them (upper-case hostname, `requireTLS`, defaults
    spelled out, null for the default port) are no change: 200 with the mask, secret kept."""
    created = await create(http, tenant, **{**SMTP_STORED, "port": 25})
    url = f"{SMTP}/{created['publicId']}"
    same: list[dict[str, Any]] = [
        {"hostname": "SMTP.Example.com", "port": 25, "name": "renamed"},
        {"port": None},
        {
            "smtpConfig": {
                "secure": False,
                "ignoreTLS": False,
                "requireTLS": False,
                "tlsOptions": {"rejectUnauthorized": True},
                "allowPlaintextAuth": False,
                "auth": KEPT,
            }
        },
        {"status": "maintenance", "checkInterval": 300, "allowedCheckCountryCodes": ["DE"]},
    ]
    for change in same:
        r = await http.patch(url, json=change, headers=tenant.auth("member"))
        assert r.status_code == 200, (change, r.text)
    row = await stored_row(pool, created["publicId"])
    assert opened(SecretBox(settings.secrets.secrets_key or ""), row["config"]["auth"]["pass"]) == (
        "stored-pass"
    )


async def test_a_monitor_without_a_secret_moves_freely(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(http, tenant, smtpConfig={"auth": {"user": "billing"}})
    r = await http.patch(
        f"{SMTP}/{created['publicId']}",
        json={"hostname": "elsewhere.example", "port": 2525, "smtpConfig": {"secure": True}},
        headers=tenant.auth("member"),
    )
    assert r.status_code == 200, r.text


IMAP_MOVES: list[tuple[dict[str, Any], str]] = [
    ({"hostname": "evil.example"}, "hostname"),
    ({"port": 1143}, "port"),
    (
        {"imapPopConfig": {"protocol": "pop3", "user": "u", "password": MASK}},
        "imapPopConfig.protocol",
    ),
    ({"imapPopConfig": {"tls": False, "user": "u", "password": MASK}}, "imapPopConfig.tls"),
    ({"imapPopConfig": {"tls": True, "user": "root", "password": MASK}}, "imapPopConfig.user"),
    (
        {"imapPopConfig": {"tls": True, "user": "u", "password": MASK, "allowPlaintextAuth": True}},
        "imapPopConfig.allowPlaintextAuth",
    ),
]


@pytest.mark.parametrize(("change", "named"), IMAP_MOVES, ids=[m[1] for m in IMAP_MOVES])
async def test_imap_pop_change_moving_the_password_needs_it_again(
    http: httpx.AsyncClient, tenant: Tenant, change: dict[str, Any], named: str
) -> None:
    created = await create(
        http,
        tenant,
        "imap",
        port=993,
        imapPopConfig={"protocol": "imap", "user": "u", "password": "stored", "tls": True},
    )
    url = f"{IMAP}/{created['publicId']}"
    r = await http.patch(url, json=change, headers=tenant.auth("member"))
    error = assert_error(r, 400, fields=["imapPopConfig.password"], code="secret_required")
    assert named in error["message"]
    cfg = {**change.get("imapPopConfig", {"user": "u", "tls": True}), "password": "again"}
    r = await http.patch(url, json={**change, "imapPopConfig": cfg}, headers=tenant.auth())
    assert r.status_code == 200, r.text
