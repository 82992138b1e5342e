"""`python -m tests.logs.deliveries LEVEL`: the product's logging as `serve` and the agent
configure it (`shared.logging.configure`, JSON to stderr, LOG_LEVEL=LEVEL), then one real
delivery of every kind that holds a credential, each to a loopback peer: every notification
channel kind through `ChannelSender.deliver` (the outbox's and "send a test"'s path), the SMS
webhook with `user:password@`, the e-mail relay with AUTH, an OAuth2 token fetch of each grant
with a secret, and an agent's IMAP login (a monitor's password), accepted and refused. Prints
`delivered <what>` on stdout for each; the test greps stderr for `CREDENTIALS`."""

import asyncio
import ipaddress
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import asyncpg
import trustme

from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from controller.monitors.oauth2_grants import Grant
from controller.notify import Notification, channel_kinds
from controller.notify.channel_send import ChannelSender
from controller.notify.channel_store import StoredChannel
from controller.notify.egress import Egress
from controller.notify.email import EmailChannel
from controller.notify.links import Links
from controller.notify.sms import SmsChannel
from controller.oauth2.fetcher import TokenFetcher
from controller.secrets.box import SecretBox, generate_key
from shared.clock import WALL
from shared.logging import configure
from shared.messages import ImapPopConfig
from shared.secret import Secret
from testkit.alerting.receivers import ALERTMANAGER, Alertmanager, Receiver
from testkit.oauth2.issuer import TokenIssuer
from testkit.oauth2.token_endpoint import TokenEndpoint, ca_context, serve
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer

SECRETS = {
    "webhook": "whsec-signing-k3y-never-logged",
    "pagerduty": "R0UTINGKEY0000000000000000000000",
    "opsgenie": "opsgenie-api-key-never-logged",
    "telegram": "123456:AAbot-token-never-logged",
}
SMS_USER, SMS_PASSWORD = "sms-user-never-logged", "sms-pass-never-logged"
SMTP_USER, SMTP_PASSWORD = "relay-user", "relay-pass-never-logged"
CLIENT, CLIENT_SECRET = "mailprobe-client", "oauth2-client-secret-never-logged"
REFRESH_TOKEN = "oauth2-refresh-token-never-logged"
MONITOR_USER, MONITOR_PASSWORD = "alice", "monitor-pass-never-logged"
# The path and query parts that make a Slack, Teams or Apprise URL its own credential.
URL_SECRETS = ("XXXXsecretpathXXXX", "teamsSecretSig", "apprise-secret-path-never-logged")
CREDENTIALS = (
    *SECRETS.values(),
    *URL_SECRETS,
    "apprise-basic-pass-never-logged",
    SMS_PASSWORD,
    SMS_USER,
    SMTP_PASSWORD,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    MONITOR_PASSWORD,
)
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
SENT_AT = datetime(2025, 1, 1, tzinfo=UTC)
HAS_ALERTMANAGER = os.path.exists(ALERTMANAGER)  # `make alertmanager` installs it


def said(what: str) -> None:
    print("delivered", what, flush=True)


def _channel(kind: str, url: str, secret: str | None, chat_id: str | None) -> StoredChannel:
    return StoredChannel(
        id=1,
        public_id=uuid.uuid4(),
        organization_id=1,
        name=f"{kind} on-call",
        kind=kind,
        url=url,
        url_shown=url,
        secret=secret,
        chat_id=chat_id,
        created_at=SENT_AT,
        updated_at=SENT_AT,
        monitor_ids=[],
        customer_ids=[],
    )


async def channels() -> None:
    box = SecretBox(generate_key())
    # `deliver` reads no row: the pool is the outbox's, unused on this path.
    sender = ChannelSender(
        cast(asyncpg.Pool, None),
        box,
        Egress({"*": LOOPBACK}, timeout_s=5),
        Links(None),
        clock=WALL.now,
    )
    for kind in ("webhook", "slack", "teams", "pagerduty", "opsgenie", "telegram", "apprise"):
        async with Receiver(kind, SECRETS.get(kind, ""), tls=False) as r:
            url = r.url
            row = _channel(
                kind,
                box.seal(url) if kind in channel_kinds.SECRET_URL else url,
                box.seal(SECRETS[kind]) if kind in SECRETS else None,
                r.chats[0] if kind == "telegram" else None,
            )
            event = channel_kinds.test_event("c", f"{kind} on-call", SENT_AT, None)
            await sender.deliver(row, event)
            assert r.delivered, kind
            said(kind)
    if HAS_ALERTMANAGER:
        with tempfile.TemporaryDirectory() as tmp:
            async with Alertmanager(tmp) as am:
                row = _channel("alertmanager", am.url, None, None)
                event = channel_kinds.test_event("c", "am", SENT_AT, None)
                await sender.deliver(row, event)
                said("alertmanager")


def note(target: str) -> Notification:
    return Notification(
        target=target, subject="[mailprobe] test", text="a test", html=None, key="k"
    )


async def sms_and_email() -> None:
    # The Slack receiver takes any JSON with a `text` under /services/: the SMS body has one.
    async with Receiver("slack", tls=False) as r:
        url = f"http://{SMS_USER}:{SMS_PASSWORD}@127.0.0.1:{r.port}/services/sms"
        await SmsChannel(url).send(note("+4915112345678"))
        assert r.delivered
        said("sms")
    async with SmtpPeer(users={SMTP_USER: SMTP_PASSWORD}, auth_in_clear=True) as relay:
        url = f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{relay.port}"
        await EmailChannel(url, "mailprobe@example.test").send(note("ops@example.test"))
        assert relay.auths
        said("email")


async def oauth2() -> None:
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as keys:
        issuer = TokenIssuer(Path(keys))
        made = TokenEndpoint(
            issuer,
            "box@example.test",
            clients={CLIENT: CLIENT_SECRET},
            refresh_tokens={REFRESH_TOKEN: "box@example.test"},
        )
        async with serve(made, ca) as endpoint:
            fetcher = TokenFetcher(verify=ca_context(ca), allow_private=True, timeout_s=5)
            for grant in (
                Grant(
                    token_url=endpoint.url, client_id=CLIENT, client_secret=Secret(CLIENT_SECRET)
                ),
                Grant(
                    grant="refresh_token",
                    token_url=endpoint.url,
                    client_id=CLIENT,
                    client_secret=Secret(CLIENT_SECRET),
                    refresh_token=Secret(REFRESH_TOKEN),
                ),
            ):
                await fetcher.fetch(grant, "imap", "box@example.test", datetime.now(UTC))
                said(f"oauth2 {grant.grant}")


async def monitor_login() -> None:
    contexts = build_ssl_contexts()
    async with ImapPeer(
        users={MONITOR_USER: MONITOR_PASSWORD}, login_disabled="never", echo_password=True
    ) as peer:
        for password in (MONITOR_PASSWORD, MONITOR_PASSWORD + "-wrong"):
            config = ImapPopConfig(
                protocol="imap",
                user=MONITOR_USER,
                password=Secret(password),
                tls=False,
                allow_plaintext_auth=True,
            )
            job = make_job("imap", peer.port, config, hostname="localhost")
            result = await run_check(job, "agent-logs", True, contexts, clock=WALL)
            said(f"imap login {result.status}")


async def main() -> None:
    await channels()
    await sms_and_email()
    await oauth2()
    await monitor_login()


if __name__ == "__main__":
    configure("json", sys.argv[1])
    asyncio.run(main())
