"""The report mailbox configured through `/api/report-mailbox` and read by the alerter's worker
(controller.reports.reading) from Debian's Dovecot, reports mailed through Debian's Postfix:
with a password or an OAuth2 grant (tokens from a loopback token endpoint), its secrets masked
and bound to the server, failures kept on the mailbox for the API, one organization's mailbox
invisible and useless to another."""

import dataclasses
import ssl
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import trustme

from controller.notify.links import Links
from controller.oauth2.fetcher import TokenFetcher
from controller.reports import reading
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.issuer import SCOPE
from testkit.oauth2.postfix import Postfix
from testkit.oauth2.token_endpoint import TokenEndpoint, ca_context, serve
from testkit.peers.pop3 import Pop3Peer
from testkit.reports import made
from testkit.serving import http_client, serve_app
from tests.conftest import Tenant, make_tenant
from tests.reports.evil_mail import EvilPop3
from tests.reports.mailing import PASSWORD, USER, delivered, message, send
from tests.reports.test_tls_endpoint import _monitor

MASK = "********"
PATH = "/api/report-mailbox"
CLIENT, CLIENT_SECRET = "report-reader", "report-reader-secret"


@pytest.fixture(scope="module")
async def api(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The API of a controller that allows token endpoints and report mailboxes on 127.0.0.1."""
    allowing = settings.replace(oauth2_token_hosts="127.0.0.1", reports_mailbox_allow_private=True)
    async with serve_app(create_app(allowing, pool)) as url:
        yield url


@pytest.fixture
async def client(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=api, timeout=10) as c:
        yield c


@pytest.fixture
async def owner(pool: asyncpg.Pool) -> AsyncIterator[Tenant]:
    """A fresh organization whose mailbox goes at the end, so no other test's pass reads it."""
    tenant = await make_tenant(pool)
    yield tenant
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM report_mailboxes WHERE organization_id = $1", tenant.org_id)


@pytest.fixture
async def token_endpoint(imap_pop: Dovecot, mail_ca: trustme.CA) -> AsyncIterator[TokenEndpoint]:
    made_ = TokenEndpoint(imap_pop.issuer, USER, clients={CLIENT: CLIENT_SECRET})
    async with serve(made_, mail_ca) as served:
        yield served


def reader(settings: ControllerSettings, ca: trustme.CA) -> reading.Reader:
    return reading.Reader(
        SecretBox(settings.secrets.secrets_key or ""),
        TokenFetcher(verify=ca_context(ca), allow_private=True, timeout_s=5),
        Links(),
        allow_private=True,
        clock=WALL,
    )


def mailbox(dc: Dovecot, ca: trustme.CA, **more: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": dc.ports["imaps"],
        "user": USER,
        "caPem": ca.cert_pem.bytes().decode(),
        **more,
    }


async def _due_now(pool: asyncpg.Pool, tenant: Tenant) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE report_mailboxes SET next_read_at = now() WHERE organization_id = $1",
            tenant.org_id,
        )


async def test_a_mailbox_set_by_the_api_is_read_on_schedule_and_its_messages_moved(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    owner: Tenant,
    domain: str,
    imap_pop: Dovecot,
    submission: Postfix,
    mail_ca: trustme.CA,
) -> None:
    await _monitor(client, owner, domain)
    tls = made.tls_gzip(made.tls_json(domain))
    mails = [
        message(f"Report Domain: {domain}", [(tls, "application/tlsrpt+gzip", "r.json.gz")]),
        message(f"Report domain: {domain}", [(made.dmarc_zip(domain), "application/zip", "d.zip")]),
        message("Hello", []),
    ]
    await send(submission, imap_pop, mail_ca, mails)
    await delivered(imap_pop, len(mails))

    r = await client.put(
        PATH, json=mailbox(imap_pop, mail_ca, password=PASSWORD), headers=owner.auth("admin")
    )
    assert r.status_code == 200, r.text
    assert r.json()["password"] == MASK and r.json()["lastReadAt"] is None
    r = await client.get(PATH, headers=owner.auth("readonly"))
    assert r.status_code == 200 and r.json()["password"] == MASK
    assert PASSWORD not in r.text

    assert await reading.one_pass(pool, reader(settings, mail_ca)) >= 1
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastError"] is None, shown
    assert (shown["lastMessages"], shown["lastStored"], shown["lastRejected"]) == (3, 2, 1)
    assert shown["lastOkAt"] == shown["lastReadAt"]
    assert shown["nextReadAt"] > shown["lastReadAt"]  # due again an interval later

    maildir = imap_pop.homes / "alice" / "Maildir"
    assert not list((maildir / "new").iterdir()) and not list((maildir / "cur").iterdir())
    moved = maildir / ".mailprobe-read"
    assert len([*(moved / "cur").iterdir(), *(moved / "new").iterdir()]) == 3
    r = await client.get("/api/reports", headers=owner.auth("readonly"))
    assert sorted((x["kind"], x["via"]) for x in r.json()) == [("dmarc", "mail"), ("tls", "mail")]

    # Not due again until its interval has passed: a second pass leaves it alone.
    await reading.one_pass(pool, reader(settings, mail_ca))
    again = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert again["lastReadAt"] == shown["lastReadAt"]


async def test_a_failed_read_is_kept_on_the_mailbox_for_the_api(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    owner: Tenant,
    imap_pop: Dovecot,
    mail_ca: trustme.CA,
) -> None:
    body = mailbox(imap_pop, mail_ca, password="not-the-password")
    assert (await client.put(PATH, json=body, headers=owner.auth("owner"))).status_code == 200
    await reading.one_pass(pool, reader(settings, mail_ca))
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastError"].startswith("login refused"), shown
    assert shown["lastOkAt"] is None and shown["lastMessages"] is None

    # A mailbox at a loopback address is refused unless the operator allows it: by the reader,
    # and at once by a controller that does not allow it.
    await _due_now(pool, owner)
    async with (
        serve_app(create_app(settings, pool)) as strict_url,
        http_client(base_url=strict_url, timeout=10) as strict_api,
    ):
        for host, said in [
            ("127.0.0.1", "is 127.0.0.1, which is not public"),
            ("localhost", "resolves to 127.0.0.1"),
            ("::1", "is ::1, which is not public"),
            ("10.1.2.3", "is 10.1.2.3, which is not public"),
            ("0x7f.1", "Invalid hostname"),
        ]:
            r = await strict_api.put(PATH, json={**body, "host": host}, headers=owner.auth("owner"))
            assert r.status_code == 400, (host, r.text)
            assert r.json()["fields"] == ["host"] and said in r.json()["message"], r.text
    strict = dataclasses.replace(reader(settings, mail_ca), allow_private=False)
    await reading.one_pass(pool, strict)
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert "private or reserved address" in shown["lastError"], shown


async def test_a_kept_password_is_bound_to_its_server_and_user(
    client: httpx.AsyncClient, owner: Tenant, imap_pop: Dovecot, mail_ca: trustme.CA
) -> None:
    admin = owner.auth("admin")
    body = mailbox(imap_pop, mail_ca, password=PASSWORD)
    assert (await client.put(PATH, json=body, headers=admin)).status_code == 200

    kept = {**body, "password": MASK, "folder": "Reports"}
    r = await client.put(PATH, json=kept, headers=admin)
    assert r.status_code == 200 and r.json()["folder"] == "Reports"
    no_password = {k: v for k, v in kept.items() if k != "password"}
    assert (await client.put(PATH, json=no_password, headers=admin)).status_code == 200

    for change in ({"host": "localhost"}, {"port": 143}, {"user": "bob@example.com"}):
        r = await client.put(PATH, json={**kept, **change}, headers=admin)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "secret_required"
        assert r.json()["fields"] == ["password"]
        assert next(iter(change)) in r.json()["message"]
    r = await client.put(PATH, json={**kept, "caPem": None}, headers=admin)
    assert r.status_code == 400 and r.json()["fields"] == ["password"]

    r = await client.put(PATH, json={**body, "host": "localhost"}, headers=admin)
    assert r.status_code == 200 and r.json()["host"] == "localhost"

    r = await client.put(PATH, json=body, headers=owner.auth("readonly"))
    assert r.status_code == 403
    r = await client.put(
        PATH, json={**body, "oauth2": {"grant": "client_credentials"}}, headers=admin
    )
    assert r.status_code == 400 and r.json()["fields"] == ["password", "oauth2"]
    r = await client.put(PATH, json={**body, "caPem": "not a certificate"}, headers=admin)
    assert r.status_code == 400 and r.json()["fields"] == ["caPem"]


async def test_another_organization_neither_sees_nor_uses_the_mailbox(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    owner: Tenant,
    imap_pop: Dovecot,
    mail_ca: trustme.CA,
) -> None:
    body = mailbox(imap_pop, mail_ca, password=PASSWORD)
    assert (await client.put(PATH, json=body, headers=owner.auth("admin"))).status_code == 200
    other = await make_tenant(pool)
    r = await client.get(PATH, headers=other.auth("admin"))
    assert r.status_code == 404
    r = await client.put(PATH, json={**body, "password": MASK}, headers=other.auth("admin"))
    assert r.status_code == 400 and r.json()["fields"] == ["password"]
    assert (await client.delete(PATH, headers=other.auth("admin"))).status_code == 404
    assert (await client.get(PATH, headers=owner.auth("readonly"))).status_code == 200
    assert (await client.delete(PATH, headers=owner.auth("admin"))).status_code == 204
    assert (await client.get(PATH, headers=owner.auth("readonly"))).status_code == 404


async def test_an_oauth2_mailbox_gets_its_token_once_and_reads_with_it(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    owner: Tenant,
    imap_pop: Dovecot,
    mail_ca: trustme.CA,
    token_endpoint: TokenEndpoint,
) -> None:
    grant = {
        "grant": "client_credentials",
        "tokenUrl": token_endpoint.url,
        "clientId": CLIENT,
        "clientSecret": CLIENT_SECRET,
        "scopes": [SCOPE],
    }
    body = mailbox(imap_pop, mail_ca, oauth2=grant)
    r = await client.put(PATH, json=body, headers=owner.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["oauth2"]["clientSecret"] == MASK and r.json()["password"] is None
    assert CLIENT_SECRET not in r.text

    await reading.one_pass(pool, reader(settings, mail_ca))
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastError"] is None, shown
    await _due_now(pool, owner)
    await reading.one_pass(pool, reader(settings, mail_ca))
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastError"] is None, shown
    assert len(token_endpoint.calls) == 1  # the cached token served the second read

    masked = {**body, "oauth2": {**grant, "clientSecret": MASK}}
    assert (await client.put(PATH, json=masked, headers=owner.auth("admin"))).status_code == 200
    moved = {**masked, "oauth2": {**grant, "clientSecret": MASK, "clientId": "someone-else"}}
    r = await client.put(PATH, json=moved, headers=owner.auth("admin"))
    assert r.status_code == 400 and r.json()["fields"] == ["oauth2.clientSecret"]
    assert "oauth2.clientId" in r.json()["message"]

    token_endpoint.down = True
    await _due_now(pool, owner)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE report_mailboxes SET access_token = NULL WHERE organization_id = $1",
            owner.org_id,
        )
    await reading.one_pass(pool, reader(settings, mail_ca))
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastError"].startswith("no OAuth2 token"), shown


async def test_a_pop3_mailbox_with_stls_set_by_the_api_is_read_and_emptied(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    owner: Tenant,
    domain: str,
    imap_pop: Dovecot,
    submission: Postfix,
    mail_ca: trustme.CA,
) -> None:
    await _monitor(client, owner, domain)
    tls = made.tls_gzip(made.tls_json(domain))
    mails = [
        message(f"Report Domain: {domain}", [(tls, "application/tlsrpt+gzip", "r.json.gz")]),
        message("Hello", []),
    ]
    await send(submission, imap_pop, mail_ca, mails)
    await delivered(imap_pop, len(mails))

    body = {**mailbox(imap_pop, mail_ca, password=PASSWORD), "protocol": "pop3"}
    body["security"], body["port"] = "starttls", imap_pop.ports["pop3"]
    r = await client.put(PATH, json=body, headers=owner.auth("admin"))
    assert r.status_code == 200, r.text
    assert (r.json()["protocol"], r.json()["security"]) == ("pop3", "starttls")

    assert await reading.one_pass(pool, reader(settings, mail_ca)) >= 1
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastError"] is None, shown
    assert (shown["lastMessages"], shown["lastStored"], shown["lastRejected"]) == (2, 1, 1)
    maildir = imap_pop.homes / "alice" / "Maildir"
    assert not list((maildir / "new").iterdir()) and not list((maildir / "cur").iterdir())
    r = await client.get("/api/reports", headers=owner.auth("readonly"))
    assert [(x["kind"], x["via"]) for x in r.json()] == [("tls", "mail")]

    # A server that offers no STLS: refused before the login, said on the mailbox.
    async with Pop3Peer({USER: PASSWORD}) as plain:
        body = {**body, "port": plain.port}
        r = await client.put(PATH, json=body, headers=owner.auth("admin"))
        assert r.status_code == 200, r.text
        await reading.one_pass(pool, reader(settings, mail_ca))
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastError"] == f"127.0.0.1:{plain.port} does not offer STLS: nothing was sent" + (
        " without TLS (security tls is POP3 over TLS at once, usually port 995)"
    ), shown
    assert "USER" not in plain.commands and "PASS" not in plain.commands


async def test_protocol_and_security_are_validated_and_default_the_port(
    client: httpx.AsyncClient, owner: Tenant, imap_pop: Dovecot, mail_ca: trustme.CA
) -> None:
    admin = owner.auth("admin")
    base = {k: v for k, v in mailbox(imap_pop, mail_ca, password=PASSWORD).items() if k != "port"}
    for protocol, security, port in [
        ("imap", "tls", 993),
        ("imap", "starttls", 143),
        ("pop3", "tls", 995),
        ("pop3", "starttls", 110),
    ]:
        r = await client.put(
            PATH, json={**base, "protocol": protocol, "security": security}, headers=admin
        )
        assert r.status_code == 200, r.text
        assert (r.json()["protocol"], r.json()["security"], r.json()["port"]) == (
            protocol,
            security,
            port,
        )
    r = await client.put(PATH, json=base, headers=admin)
    assert (r.json()["protocol"], r.json()["security"], r.json()["port"]) == ("imap", "tls", 993)

    for bad in ({"protocol": "smtp"}, {"security": "none"}, {"security": "plain"}):
        r = await client.put(PATH, json={**base, **bad}, headers=admin)
        assert r.status_code == 400, r.text
        assert next(iter(bad)) in r.text
    r = await client.put(
        PATH, json={**base, "protocol": "pop3", "folder": "Reports"}, headers=admin
    )
    assert r.status_code == 400 and r.json()["fields"] == ["folder"], r.text
    r = await client.put(PATH, json={**base, "user": "alice\r\nDELE 1"}, headers=admin)
    assert r.status_code == 400, r.text


async def test_a_kept_password_follows_a_change_of_protocol_or_security_on_the_same_port(
    client: httpx.AsyncClient, owner: Tenant, imap_pop: Dovecot, mail_ca: trustme.CA
) -> None:
    """The password stays bound to host, port, user and CA: it never goes without TLS, nor to
    a certificate of another host, whatever the protocol; a default port that moves with the
    protocol needs it again."""
    admin = owner.auth("admin")
    body = mailbox(imap_pop, mail_ca, password=PASSWORD)
    assert (await client.put(PATH, json=body, headers=admin)).status_code == 200
    kept = {**body, "password": MASK}
    for change in (
        {"security": "starttls"},
        {"protocol": "pop3"},
        {"protocol": "pop3", "security": "starttls"},
    ):
        r = await client.put(PATH, json={**kept, **change}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["password"] == MASK
    no_port = {k: v for k, v in kept.items() if k != "port"}
    r = await client.put(PATH, json={**no_port, "protocol": "pop3"}, headers=admin)
    assert r.status_code == 400 and r.json()["code"] == "secret_required", r.text
    assert "port" in r.json()["message"]


async def test_a_refusal_repeating_the_password_is_kept_without_it(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    owner: Tenant,
    mail_ca: trustme.CA,
) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mail_ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    async with Pop3Peer({}, starttls=server_tls, echo_password=True) as careless:
        body = {
            "host": "127.0.0.1",
            "port": careless.port,
            "protocol": "pop3",
            "security": "starttls",
            "user": USER,
            "password": PASSWORD,
            "caPem": mail_ca.cert_pem.bytes().decode(),
        }
        r = await client.put(PATH, json=body, headers=owner.auth("admin"))
        assert r.status_code == 200, r.text
        await reading.one_pass(pool, reader(settings, mail_ca))
    assert any(PASSWORD in line for tls, line in careless.heard if tls)
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastError"] == f"login refused: -ERR [AUTH] invalid password {MASK}", shown


async def test_a_servers_refusal_is_kept_on_the_mailbox_without_its_hidden_characters(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    owner: Tenant,
    mail_ca: trustme.CA,
) -> None:
    """A mailbox server answers the login with a NUL (which PostgreSQL's text cannot hold) and
    an escape sequence: the read's error is kept and shown, as plain text."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mail_ca.issue_cert("127.0.0.1").configure_cert(ctx)
    async with EvilPop3(ctx, []) as server:
        server.refusal = "no\x00pe\x1b[2J"
        body = {
            "host": "127.0.0.1",
            "port": server.port,
            "user": USER,
            "password": "not-the-password",
            "caPem": mail_ca.cert_pem.bytes().decode(),
            "protocol": "pop3",
            "security": "tls",
        }
        r = await client.put(PATH, json=body, headers=owner.auth("owner"))
        assert r.status_code == 200, r.text
        await reading.one_pass(pool, reader(settings, mail_ca))
    shown = (await client.get(PATH, headers=owner.auth("readonly"))).json()
    assert shown["lastReadAt"] is not None and shown["lastError"], shown
    assert "nope[2J" in shown["lastError"], shown
    assert shown["nextReadAt"] > shown["lastReadAt"]  # not read again at every pass
