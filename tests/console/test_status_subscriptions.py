"""Subscribing to a public status page by e-mail, end to end over real HTTP, through the outbox to
a real SMTP relay (aiosmtpd): double opt-in, notices written by a person mailed to confirmed
subscribers only, one-click unsubscribe without a login, and what an anonymous visitor cannot
make the controller do (mail an address over and over, learn who subscribes, use up the
organization's alert e-mail)."""

import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from controller.notify.budget import Budget
from controller.notify.email import EmailChannel
from controller.notify.outbox import OutboxWorker
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from shared.clock import WALL
from testkit.alerting.peers import Relay
from testkit.serving import http_client, serve_app
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish
from tests.console.test_status_pages import _publish

LINK = re.compile(r"(http://localhost:8080/status/\S+)")


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = Relay(embedded.free_port())
    await r.start()
    yield r
    await r.stop()


def _outbox(pool: asyncpg.Pool, relay: Relay, budget: Budget | None = None) -> OutboxWorker:
    channel = EmailChannel(f"smtp://127.0.0.1:{relay.port}", "status <status@mailprobe.test>")
    return OutboxWorker(pool, {"email": channel}, backoff_s=0, budget=budget, clock=WALL.now)


def _to(relay: Relay, address: str) -> list[EmailMessage]:
    return [m for m in relay.messages if m["To"] == address]


def _link(message: EmailMessage, word: str) -> str:
    """The path and query of the message's link containing `word` (links name PUBLIC_URL)."""
    body = message.get_content()
    for url in LINK.findall(body):
        if word in url:
            parts = urlsplit(url)
            return f"{parts.path}?{parts.query}"
    raise AssertionError(body)


async def _page(client: Browserish, pool: asyncpg.Pool, name: str) -> tuple[Tenant, str]:
    org = await make_tenant(pool)
    slug = f"{name}-{org.org_id}"
    assert (await _publish(client, org, slug, [], hostnames=False)).status_code == 303
    return org, slug


async def _notice(http: httpx.AsyncClient, org: Tenant, **fields: str) -> httpx.Response:
    body = {"customerId": org.customer_public_id, "title": "Delays", "body": "Looking"} | fields
    return await http.post("/api/status-notices", json=body, headers=org.auth())


async def test_double_opt_in_then_updates_then_one_click_unsubscribe(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, relay: Relay
) -> None:
    org, slug = await _page(client, pool, "optin")
    reader = "reader@example.net"
    worker = _outbox(pool, relay)
    r = await http.post(f"/status/{slug}/subscribe", data={"email": reader})
    assert r.status_code == 200 and "link to confirm" in r.text
    await worker.burst()
    (confirm_mail,) = _to(relay, reader)
    assert "Confirm your subscription" in confirm_mail["Subject"]

    # Not yet confirmed: a notice mails nobody.
    r = await _notice(http, org, title="Slow delivery", body="We are looking into it.")
    assert r.status_code == 201, r.text
    notice = r.json()
    await worker.burst()
    assert len(_to(relay, reader)) == 1

    confirm = _link(confirm_mail, "/confirm")
    page = await http.get(confirm)  # opening the link only shows a button (mail scanners)
    assert page.status_code == 200 and "Confirm subscription" in page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    r = await http.post(f"/status/{slug}/confirm", data={"token": token.group(1)})
    assert r.status_code == 200 and "Subscribed" in r.text
    r = await http.post(f"/status/{slug}/confirm", data={"token": token.group(1)})
    assert r.status_code == 400 and "token:" in r.text  # used once

    r = await http.post(
        f"/api/status-notices/{notice['id']}/updates",
        json={"state": "resolved", "body": "Delivery is back to normal."},
        headers=org.auth(),
    )
    assert r.status_code == 201, r.text
    assert r.json()["resolvedAt"] is not None
    await worker.burst()
    update = _to(relay, reader)[-1]
    assert "Slow delivery: resolved" in update["Subject"]
    assert "Delivery is back to normal." in update.get_content()

    unsubscribe = _link(update, "/unsubscribe")
    assert update["List-Unsubscribe"] == f"<http://localhost:8080{unsubscribe}>"
    assert update["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    r = await http.get(unsubscribe)
    assert r.status_code == 200 and "Unsubscribe" in r.text
    forged = unsubscribe.replace("t=", "t=x")
    query = dict(p.split("=", 1) for p in urlsplit(forged).query.split("&"))
    r = await http.post(f"/status/{slug}/unsubscribe", data=query)
    assert r.status_code == 400 and "not valid" in r.text
    # One click (RFC 8058): the mail client POSTs to the mail's own link, no login.
    r = await http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "Unsubscribed" in r.text
    await _notice(http, org, title="Another one")
    await worker.burst()
    assert len(_to(relay, reader)) == 2


async def test_anonymous_requests_cannot_mail_an_address_over_and_over(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, relay: Relay
) -> None:
    _, first = await _page(client, pool, "limits-a")
    _, second = await _page(client, pool, "limits-b")
    victim = "victim@example.org"
    worker = _outbox(pool, relay)
    answers = set()
    for slug in (first, second, first, second, first):
        r = await http.post(f"/status/{slug}/subscribe", data={"email": victim.upper()})
        answers.add((r.status_code, r.text.replace(slug, "")))
    await worker.burst()
    # STATUS_SUBSCRIBE_PER_ADDRESS_PER_DAY (3) over all pages; every answer the same.
    assert len(_to(relay, victim.upper())) == 3
    assert len(answers) == 1

    # Per page: STATUS_SUBSCRIBE_PER_PAGE_PER_HOUR (20), then a 429.
    codes = [
        (
            await http.post(f"/status/{first}/subscribe", data={"email": f"p{i}@example.org"})
        ).status_code
        for i in range(22)
    ]
    assert codes.count(200) == 18 and codes[-2:] == [429, 429]  # 2 of the 20 went to the victim

    r = await http.post(f"/status/{first}/subscribe", data={"email": "a@b.c,root"})
    assert r.status_code == 400 and "email" in r.text
    assert (
        await http.post("/status/no-such-page/subscribe", data={"email": victim})
    ).status_code == 404


async def test_a_subscribed_address_gets_the_same_answer_and_no_mail(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, relay: Relay
) -> None:
    """No enumeration: asking for an address already subscribed answers as for a new one."""
    _, slug = await _page(client, pool, "enum")
    worker = _outbox(pool, relay)
    known = "known@example.com"
    first = await http.post(f"/status/{slug}/subscribe", data={"email": known})
    await worker.burst()
    page = await http.get(_link(_to(relay, known)[0], "/confirm"))
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    await http.post(f"/status/{slug}/confirm", data={"token": token.group(1)})
    again = await http.post(f"/status/{slug}/subscribe", data={"email": known})
    fresh = await http.post(f"/status/{slug}/subscribe", data={"email": "new@example.com"})
    assert first.text == again.text == fresh.text.replace("new@example.com", known)
    await worker.burst()
    assert len(_to(relay, known)) == 1


async def test_subscriber_mail_has_a_budget_of_its_own(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, relay: Relay
) -> None:
    """Past ORG_MAX_SUBSCRIBER_MAILS_PER_HOUR the rows are dropped with the reason; the
    organization's alert e-mail budget is untouched."""
    org, slug = await _page(client, pool, "budget")
    worker = _outbox(pool, relay, Budget(email=500, sms=100, subscribers=2))
    for i in range(4):
        await http.post(f"/status/{slug}/subscribe", data={"email": f"b{i}@example.com"})
    await worker.burst()
    assert sum(len(_to(relay, f"b{i}@example.com")) for i in range(4)) == 2
    rows = await pool.fetch(
        "SELECT status, last_error FROM notification_outbox WHERE organization_id = $1 ORDER BY id",
        org.org_id,
    )
    assert [r["status"] for r in rows] == ["sent", "sent", "dropped", "dropped"]
    assert "ORG_MAX_SUBSCRIBER_MAILS_PER_HOUR" in rows[-1]["last_error"]
    used = await pool.fetch(
        "SELECT source, channel, used, held FROM notification_budget WHERE organization_id = $1",
        org.org_id,
    )
    got = [(u["source"], u["channel"], u["used"], u["held"]) for u in used]
    assert got == [("subscribers", "email", 2, 2)]


async def test_without_public_url_a_page_takes_no_subscription_and_builds_no_link_from_host(
    client: Browserish, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """A mail's links come from PUBLIC_URL only, never from the Host header a client chooses:
    without it, a subscription is refused (503, saying why) and nothing is queued to mail."""
    org, slug = await _page(client, pool, "nourl")
    unset = settings.replace(public_url=None)
    async with (
        serve_app(create_app(unset, pool)) as url,
        http_client(base_url=url, headers={"Host": "evil.example"}) as anonymous,
    ):
        r = await anonymous.post(f"/status/{slug}/subscribe", data={"email": "who@example.net"})
    assert r.status_code == 503 and "PUBLIC_URL" in r.text
    queued = await pool.fetchval(
        "SELECT count(*) FROM notification_outbox WHERE organization_id = $1", org.org_id
    )
    assert queued == 0


SPAM_TITLE = ("CHEAP PILLS at pills.example, call +1 555 0100 now! " * 4)[:200]


async def test_the_confirmation_mail_carries_none_of_the_organizations_text(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, relay: Relay
) -> None:
    """Anyone may type any address: the one mail it gets before confirming says only
    mailprobe's words and the page's links, never the page's title (200 characters the
    organization chose)."""
    org = await make_tenant(pool)
    slug = f"spam-{org.org_id}"
    published = await _publish(client, org, slug, [], hostnames=False, title=SPAM_TITLE)
    assert published.status_code == 303
    stranger = "stranger@example.net"
    r = await http.post(f"/status/{slug}/subscribe", data={"email": stranger})
    assert r.status_code == 200
    await _outbox(pool, relay).burst()
    (mail,) = _to(relay, stranger)
    assert mail["Subject"] == "Confirm your subscription to a status page"
    body = mail.get_content()
    assert "PILLS" not in body and "pills.example" not in body and "555 0100" not in body
    assert "PILLS" not in str(mail)
    assert f"http://localhost:8080/status/{slug}" in body and "/confirm?token=" in body
    page = await http.get(_link(mail, "/confirm"))  # the page itself may name its title
    assert page.status_code == 200 and "CHEAP PILLS" in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/status/nobody-has-this-page",
        "/status/NOT_A_SLUG",
        "/status/nobody-has-this-page/summary.json",
        "/status/nobody-has-this-page/confirm?token=x",
        "/status/nobody-has-this-page/unsubscribe",
    ],
)
async def test_an_unknown_status_page_is_a_404_for_the_public(
    http: httpx.AsyncClient, path: str
) -> None:
    """Said to anyone: there is no such page; nothing of the console (its login, its link,
    organizations)."""
    r = await http.get(path)
    assert r.status_code == 404
    assert "There is no page at this address" in r.text
    lowered = r.text.lower()
    assert "organization" not in lowered and "/console/" not in r.text.replace(
        "/console/static/", ""
    )
    assert "log in" not in lowered and "login" not in lowered and "monitors" not in lowered
