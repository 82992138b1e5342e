"""notificationEmail is exactly one address (issue 12 #5: `a@x.com,root,postmaster` became
three RCPT TO), and the e-mail channel sends one field to one recipient whatever is stored."""

import asyncio
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import Envelope, Session

from controller.notify import DeliveryError, Notification
from controller.notify.email import EmailChannel
from testkit.peers.smtp import SmtpPeer
from tests.api.helpers import SMTP, assert_error, create, seed_body
from tests.conftest import Tenant

NOT_ONE_ADDRESS = [
    "a@x.com,root,postmaster",
    "a@x.com, b@y.com",
    "a@x.com;b@y.com",
    "a@x.com b@y.com",
    "root",
    "postmaster",
    "Ops <ops@example.com>",
    '"a,b"@example.com',
    "ops@localhost",
    "ops@127.0.0.1",
    "ops@[127.0.0.1]",
    "a..b@example.com",
    ".ops@example.com",
    "ops@example..com",
    "ops\t@example.com",
]


@pytest.mark.parametrize("value", NOT_ONE_ADDRESS)
async def test_notification_email_that_is_not_one_address_is_400(
    http: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    r = await http.post(
        SMTP, json=seed_body("smtp", tenant, notificationEmail=value), headers=tenant.auth()
    )
    error = assert_error(r, 400, fields=["notificationEmail"])
    assert "exactly one e-mail address" in error["message"]
    monitor = await create(http, tenant)
    r = await http.patch(
        f"{SMTP}/{monitor['publicId']}", json={"notificationEmail": value}, headers=tenant.auth()
    )
    assert_error(r, 400, fields=["notificationEmail"])


@pytest.mark.parametrize(
    "value", ["ops@example.com", "Ops.Team+alerts@Example.COM", "noc@bücher.example"]
)
async def test_one_address_is_stored_as_given(
    http: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    monitor = await create(http, tenant, notificationEmail=value)
    assert monitor["notificationEmail"] == value


class Relay(SmtpPeer):
    """A loopback SMTP relay keeping every RCPT TO it is sent."""

    def __init__(self) -> None:
        super().__init__(users={})
        self.rcpt_to: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.rcpt_to.append(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        return "250 OK queued"

    def _protocol(self) -> SmtpServer:
        proto = SmtpServer(self, hostname="relay.test", loop=asyncio.get_running_loop())
        self._protocols.append(proto)
        return proto


def note(target: str) -> Notification:
    return Notification(target, "mx.example.com is down", "text", None, "key-1")


async def test_the_email_channel_sends_one_rcpt_to_for_one_address() -> None:
    async with Relay() as relay:
        channel = EmailChannel(f"smtp://127.0.0.1:{relay.port}", "alerts@mailprobe.test")
        await channel.send(note("ops@example.com"))
    assert relay.rcpt_to == ["ops@example.com"]


@pytest.mark.parametrize("target", ["a@x.com,root,postmaster", "root", "Ops <ops@example.com>"])
async def test_the_email_channel_refuses_a_target_that_is_not_one_address(target: str) -> None:
    """A row stored before the API's rule (or written by SQL) is refused for good, never
    fanned out: the relay gets no RCPT TO at all."""
    async with Relay() as relay:
        channel = EmailChannel(f"smtp://127.0.0.1:{relay.port}", "alerts@mailprobe.test")
        with pytest.raises(DeliveryError) as caught:
            await channel.send(note(target))
    assert caught.value.permanent
    assert "not exactly one e-mail address" in str(caught.value)
    assert relay.rcpt_to == []
