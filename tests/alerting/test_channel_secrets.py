"""A channel's stored secret goes only to the URL it was given with (issue 55): an admin who
cannot read the owner's secret and points the channel at a host of their own, with the secret
left out or sent as the mask, is refused (400 `secret_required` naming `secret`) and their
recorder hears nothing; with a secret of their own the change is taken and the test carries
that secret, never the owner's. And a URL is checked by the parser that sends it: odd hosts are
a 400 naming `url` on create and change, and a stored URL the sender cannot send is a clean
"not delivered" that takes none of the budget."""

import re
import time
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from controller.notify import DeliveryError, channel_kinds, channel_store
from controller.notify.channel_send import ChannelSender
from controller.notify.channel_shown import shown_url
from controller.notify.links import Links
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.clock import WALL
from shared.secret import SECRET_MASK
from shared.timefmt import utcnow
from testkit.alerting.receivers import Receiver, verify_signature
from tests.alerting.conftest import PUBLIC_URL, loopback_egress
from tests.conftest import Tenant

PATH = "/api/notification-channels"
CHAT = "-1001234567890"
OWNERS = {
    "webhook": "whsec-owners-signing-key-4f1c",
    "pagerduty": "R0UTINGKEYOWNER00000000000000000",
    "opsgenie": "owners-genie-key-9d2e",
    "alertmanager": "owners-bearer-token-77ab",
    "telegram": "111111:AAowners-bot-token-3c5d",
}
THEIRS = {
    "webhook": "whsec-admins-own-key-0b9a",
    "pagerduty": "R0UTINGKEYADMIN00000000000000000",
    "opsgenie": "admins-genie-key-1f7c",
    "alertmanager": "admins-bearer-token-2e4d",
    "telegram": "222222:AAadmins-bot-token-8a1b",
}
KINDS = sorted(OWNERS)
# Hosts the standard library and resolvers read otherwise than they look, or httpx cannot send.
ODD_URLS = [
    "https://0177.0.0.2/x",  # octal
    "https://0x7f.1/x",  # hex and shorthand
    "https://2130706434/x",  # one integer
    "https://127.1/x",  # shorthand
    "https://[fe80::1%25eth0]/x",  # an IPv6 zone id
    "https://[fe80::1%eth0]/x",
    "https:///x",  # no host
    "https://:443/x",
    "https://exa mple.com/x",  # a space
    "https://xn--zz-zzz.example/x",  # punycode that is not
    "https://\u2603\u200d.example/x",  # IDNA refuses a zero-width joiner here
    "https://a.example\\@b.example/x",  # the parsers disagree on the host
    "https://h.example:0/x",
    "https://h.example:99999/x",
    "https://[::1/x",
]


def _body(kind: str, url: str, secret: str) -> dict[str, Any]:
    body = {"name": f"{kind} of the owner", "kind": kind, "url": url, "secret": secret}
    return body | ({"chatId": CHAT} if kind == "telegram" else {})


async def _make(api: httpx.AsyncClient, org: Tenant, kind: str, url: str) -> dict[str, Any]:
    r = await api.post(PATH, json=_body(kind, url, OWNERS[kind]), headers=org.auth("owner"))
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def _test(api: httpx.AsyncClient, org: Tenant, channel: str) -> dict[str, Any]:
    r = await api.post(f"{PATH}/{channel}/test", headers=org.auth("admin"))
    assert r.status_code == 200, r.text
    said: dict[str, Any] = r.json()
    return said


def _carried(seen: Receiver, secret: str) -> bool:
    """Whether a request `seen` carries `secret`: a webhook's signature under it, any other
    kind's secret in its path, body or headers."""
    if seen.kind == "webhook":
        return any(
            verify_signature(secret, r.headers["x-mailprobe-signature"], r.body, time.time())
            for r in seen.requests
        )
    return any(
        secret in r.path or secret in r.body.decode() or secret in repr(r.headers)
        for r in seen.requests
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_a_new_url_needs_the_secret_again_and_the_recorder_hears_nothing_without_it(
    kind: str, org: Tenant, channel_api: httpx.AsyncClient
) -> None:
    async with (
        Receiver(kind, OWNERS[kind]) as owners,
        Receiver(kind, THEIRS[kind]) as theirs,
    ):
        made = await _make(channel_api, org, kind, owners.url)
        at = f"{PATH}/{made['id']}"
        elsewhere = [theirs.url, owners.url.rstrip("/") + "/elsewhere"]
        for url in elsewhere:
            for sent in ({"url": url}, {"url": url, "secret": SECRET_MASK}):
                r = await channel_api.patch(at, json=sent, headers=org.auth("admin"))
                assert r.status_code == 400, (sent, r.text)
                assert r.json()["code"] == "secret_required"
                assert r.json()["fields"] == ["secret"]
        shown = (await channel_api.get(at, headers=org.auth("admin"))).json()["url"]
        assert shown == made["url"] == shown_url(kind, owners.url)
        assert await _test(channel_api, org, made["id"]) == {"delivered": True, "error": None}
        assert theirs.requests == [] and owners.delivered
        # The very same URL or the URL as shown, with the mask or without, keeps the secret.
        for sent in (
            {"url": owners.url},
            {"url": owners.url, "secret": SECRET_MASK},
            {"url": shown},
            {"url": shown, "secret": SECRET_MASK},
        ):
            r = await channel_api.patch(at, json=sent, headers=org.auth("admin"))
            assert r.status_code == 200, r.text
        told = len(owners.delivered)
        assert await _test(channel_api, org, made["id"]) == {"delivered": True, "error": None}
        assert len(owners.delivered) > told and theirs.requests == []
        # With a secret of their own, the new URL is theirs and hears only that secret.
        r = await channel_api.patch(
            at, json={"url": theirs.url, "secret": THEIRS[kind]}, headers=org.auth("admin")
        )
        assert r.status_code == 200, r.text
        assert await _test(channel_api, org, made["id"]) == {"delivered": True, "error": None}
        assert theirs.delivered and all(s in theirs.delivered for s in theirs.requests)
        assert _carried(theirs, THEIRS[kind]) and not _carried(theirs, OWNERS[kind])


async def test_telegrams_chat_is_not_bound_to_the_bot_token(
    org: Tenant, channel_api: httpx.AsyncClient
) -> None:
    """The token goes to the Bot API's URL whatever the chat, so a chat changes alone."""
    async with Receiver("telegram", OWNERS["telegram"], chats=(CHAT, "@opsroom")) as tg:
        made = await _make(channel_api, org, "telegram", tg.url)
        r = await channel_api.patch(
            f"{PATH}/{made['id']}", json={"chatId": "@opsroom"}, headers=org.auth("admin")
        )
        assert r.status_code == 200 and r.json()["chatId"] == "@opsroom"
        assert await _test(channel_api, org, made["id"]) == {"delivered": True, "error": None}
        assert list(tg.open_alerts) == ["@opsroom"]


@pytest.mark.parametrize("kind", ["slack", "teams"])
async def test_a_url_that_is_the_credential_moves_with_a_new_url(
    kind: str, org: Tenant, channel_api: httpx.AsyncClient
) -> None:
    """Slack's and Teams' URL is the secret: the mask shown keeps it, a new URL replaces it."""
    async with Receiver(kind) as old, Receiver(kind) as new:
        r = await channel_api.post(
            PATH, json={"name": kind, "kind": kind, "url": old.url}, headers=org.auth("owner")
        )
        assert r.status_code == 201, r.text
        at, shown = f"{PATH}/{r.json()['id']}", r.json()["url"]
        r = await channel_api.patch(at, json={"url": shown}, headers=org.auth("admin"))
        assert r.status_code == 200, r.text
        r = await channel_api.patch(at, json={"url": new.url}, headers=org.auth("admin"))
        assert r.status_code == 200, r.text
        assert (await _test(channel_api, org, r.json()["id"]))["delivered"] is True
        assert old.requests == [] and len(new.delivered) == 1


@pytest.mark.parametrize("kind", ["webhook", "slack", "teams", "pagerduty", "alertmanager"])
async def test_a_url_the_sender_cannot_read_as_it_looks_is_a_400_naming_url(
    kind: str, org: Tenant, channel_api: httpx.AsyncClient
) -> None:
    body = {"name": "odd", "kind": kind, "url": "https://hooks.example.test/x", "secret": "s3"}
    r = await channel_api.post(PATH, json=body, headers=org.auth("admin"))
    assert r.status_code == 201, r.text
    at = f"{PATH}/{r.json()['id']}"
    for url in ODD_URLS:
        r = await channel_api.post(PATH, json={**body, "url": url}, headers=org.auth("admin"))
        assert r.status_code == 400 and r.json()["fields"] == ["url"], (url, r.text)
        r = await channel_api.patch(
            at, json={"url": url, "secret": "new"}, headers=org.auth("admin")
        )
        assert r.status_code == 400 and r.json()["fields"] == ["url"], (url, r.text)


@pytest.mark.parametrize("kind", ["opsgenie", "telegram"])
async def test_a_base_url_is_checked_by_the_same_parser(
    kind: str, org: Tenant, channel_api: httpx.AsyncClient
) -> None:
    for url in ("https://0177.0.0.2", "https://2130706434", "https://[fe80::1%25eth0]"):
        r = await channel_api.post(PATH, json=_body(kind, url, "s3cret"), headers=org.auth("admin"))
        assert r.status_code == 400 and r.json()["fields"] == ["url"], r.text


async def test_a_stored_url_the_sender_cannot_send_fails_for_good_and_spends_no_budget(
    org: Tenant,
    channel_api: httpx.AsyncClient,
    alert_pool: asyncpg.Pool,
    settings: ControllerSettings,
) -> None:
    """A row stored before the check (or by hand) is not sendable: the test says so without
    taking a unit of the hourly budget, and the outbox's sender fails it for good."""
    r = await channel_api.post(
        PATH,
        json={"name": "w", "kind": "webhook", "url": "https://hooks.example.test/x", "secret": "s"},
        headers=org.auth("admin"),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    async with alert_pool.acquire() as conn:
        await conn.execute(
            "UPDATE notification_channels SET url = $2, url_shown = $2 WHERE public_id = $1",
            made["id"],
            "https://0177.0.0.2/x",
        )
        row = await channel_store.get(conn, UUID(made["id"]), None)
    assert row is not None
    said = await _test(channel_api, org, made["id"])
    assert said["delivered"] is False and "not a valid URL" in said["error"]
    async with alert_pool.acquire() as conn:
        used = await conn.fetchval(
            "SELECT used FROM notification_budget WHERE organization_id = $1", org.org_id
        )
    assert not used
    assert settings.secrets.secrets_key is not None
    sender = ChannelSender(
        alert_pool,
        SecretBox(settings.secrets.secrets_key),
        loopback_egress(),
        Links(PUBLIC_URL),
        clock=WALL.now,
    )
    event = channel_kinds.test_event(made["id"], "w", utcnow(), None)
    with pytest.raises(DeliveryError) as refused:
        await sender.deliver(row, event)
    assert refused.value.permanent and "not a valid URL" in str(refused.value)


class _EchoingServer(Receiver):
    """A web server answering every request 404 with the path and query it was asked for, as
    Apache's and many frameworks' error pages do."""

    def answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        parts = urlsplit(target)
        said = f"<p>The requested URL {parts.path} was not found.</p> query {parts.query}"
        return 404, said.encode()


@pytest.mark.parametrize(
    "tail",
    [
        "/api/webhooks/1234/Pa7hT0ken-9c1e",  # a token in the path (Discord's shape)
        "/hooks/in?token=Qu3ryT0ken-44ab",  # a token in the query
    ],
)
async def test_a_delivery_error_never_repeats_the_masked_part_of_the_url(
    tail: str, org: Tenant, channel_api: httpx.AsyncClient
) -> None:
    """A URL that may hold a token is masked to every role (`channel_shown`): an endpoint that
    echoes what it was asked for (a 404 page naming the path, a query value) must not show it
    back through the test's error, the alert history's error or the log."""
    token = re.split(r"[/=]", tail)[-1]
    async with _EchoingServer("webhook", OWNERS["webhook"]) as server:
        url = server.url.split("/hooks/")[0] + tail
        made = await _make(channel_api, org, "webhook", url)
        assert token not in made["url"]
        with capture_logs() as logs:
            said = await _test(channel_api, org, made["id"])
        assert server.requests, "the endpoint was asked"
    assert said["delivered"] is False and "HTTP 404" in said["error"], said
    assert token not in said["error"], said["error"]
    assert token not in repr(logs)
