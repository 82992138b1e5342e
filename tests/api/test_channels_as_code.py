"""Notification channels as code against the real API: `apply` creates, updates and (with
prune) deletes the organization's channels to match a channels file, idempotently; secrets come
only from MAILPROBE_SECRET_* variables and never sit in the file; `export` writes a file that
applies as no change."""

from collections.abc import AsyncIterator, Callable
from typing import TypedDict

import asyncpg
import httpx
import pytest
import yaml

from controller.ascode import channels as channel_file
from controller.ascode.spec import SpecError
from testkit.serving import http_client
from tests.conftest import Tenant

ENV = {
    "MAILPROBE_SECRET_PD": "pd-routing-key-0001",
    "MAILPROBE_SECRET_SLACK": "https://hooks.slack.test/services/T0/B0/sEcReT",
    "MAILPROBE_SECRET_HOOK_URL": "https://hooks.example.test/in?token=hOoKtOkEn",
    "MAILPROBE_SECRET_HOOK": "hook-signing-key",
}


def channels_file(customer_id: int, *, slack: bool = True) -> str:
    text = f"""\
channels:
  - name: On-call pager
    kind: pagerduty
    secret: {{env: MAILPROBE_SECRET_PD}}
    customerIds: [{customer_id}]
"""
    if slack:
        text += """\
  - name: Ops chat
    kind: slack
    url: {env: MAILPROBE_SECRET_SLACK}
  - name: Receiver
    kind: webhook
    url: {env: MAILPROBE_SECRET_HOOK_URL}
    secret: {env: MAILPROBE_SECRET_HOOK}
"""
    return text


class ApplyOptions(TypedDict):
    """`channel_file.apply`'s keyword arguments."""

    prune: bool
    dry_run: bool
    say: Callable[[str], None]


@pytest.fixture
async def client(api_url: str, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as c:
        yield c


async def test_apply_creates_keeps_and_prunes_channels_and_export_round_trips(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """A webhook URL holding a token is exported masked, as the API shows it, and that export
    applies as no change: the stored URL stays."""
    said: list[str] = []
    wanted = channel_file.load(channels_file(tenant.customer_id), "ch.yaml", ENV)
    kw: ApplyOptions = {"prune": True, "dry_run": False, "say": said.append}
    assert await channel_file.apply(wanted, "ch.yaml", client, **kw) == 0
    assert said[-1] == "ch.yaml: 3 created, 0 updated, 0 deleted"
    items = {c["name"]: c for c in await channel_file.current(client)}
    assert items["On-call pager"]["customerIds"] == [tenant.customer_id]
    assert items["Ops chat"]["url"] == "https://hooks.slack.test/********"
    assert items["Receiver"]["url"] == "https://hooks.example.test/********"

    said.clear()
    assert await channel_file.apply(wanted, "ch.yaml", client, **kw) == 0
    assert said[-1] == "ch.yaml: 0 created, 0 updated, 0 deleted"

    exported = channel_file.export_text(await channel_file.current(client))
    assert "sEcReT" not in exported and "pd-routing-key" not in exported
    assert "hOoKtOkEn" not in exported and "hook-signing-key" not in exported
    doc = yaml.safe_load(exported)
    names = {c["name"]: c for c in doc["channels"]}
    assert names["Ops chat"]["url"] == {"env": "MAILPROBE_SECRET_OPS_CHAT_URL"}
    assert names["Receiver"]["url"] == "https://hooks.example.test/********"
    env = {"MAILPROBE_SECRET_OPS_CHAT_URL": ENV["MAILPROBE_SECRET_SLACK"]}
    env["MAILPROBE_SECRET_ON_CALL_PAGER_SECRET"] = ENV["MAILPROBE_SECRET_PD"]
    env["MAILPROBE_SECRET_RECEIVER_SECRET"] = ENV["MAILPROBE_SECRET_HOOK"]
    said.clear()
    again = channel_file.load(exported, "exported.yaml", env)
    assert await channel_file.apply(again, "exported.yaml", client, **kw) == 0
    assert said[-1] == "exported.yaml: 0 created, 0 updated, 0 deleted"
    assert (
        await pool.fetchval(
            "SELECT url FROM notification_channels WHERE organization_id = $1"
            " AND name = 'Receiver'",
            tenant.org_id,
        )
        == ENV["MAILPROBE_SECRET_HOOK_URL"]
    )

    said.clear()
    fewer = channel_file.load(channels_file(tenant.customer_id, slack=False), "ch.yaml", ENV)
    assert await channel_file.apply(fewer, "ch.yaml", client, **kw) == 0
    assert said[-1] == "ch.yaml: 0 created, 0 updated, 2 deleted"
    assert [c["name"] for c in await channel_file.current(client)] == ["On-call pager"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "channels:\n  - name: x\n    kind: pagerduty\n    secret: plain-key\n",
            "ch.yaml:4: secret: secrets are not kept in the file",
        ),
        (
            "channels:\n  - name: x\n    kind: slack\n    url: https://hooks.slack.test/s\n",
            "ch.yaml:4: url: a slack URL is its credential",
        ),
        (
            "channels:\n  - name: x\n    kind: webhook\n    url: https://h.test/\n"
            "    secret: {env: MAILPROBE_TOKEN}\n",
            "ch.yaml:5: secret: MAILPROBE_TOKEN holds the API token",
        ),
        (
            "channels:\n  - name: x\n    kind: pigeon\n    url: https://h.test/\n",
            "ch.yaml:3:",
        ),
    ],
)
def test_a_bad_channels_file_is_refused_at_its_line(text: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        channel_file.load(text, "ch.yaml", {"MAILPROBE_TOKEN": "t"})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


async def test_apply_moves_a_channel_only_with_its_secret(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """`apply` goes through the API's rule: a channel's new URL needs its secret in the file
    (sent with it), and a file without it is refused naming the secret."""

    def am(url: str, secret: bool) -> list[channel_file.Channel]:
        text = f"channels:\n  - name: Alerts\n    kind: alertmanager\n    url: {url}\n"
        text += "    secret: {env: MAILPROBE_SECRET_AM}\n" if secret else ""
        return channel_file.load(text, "am.yaml", {"MAILPROBE_SECRET_AM": "am-bearer-0001"})

    said: list[str] = []
    kw: ApplyOptions = {"prune": False, "dry_run": False, "say": said.append}
    assert (
        await channel_file.apply(am("https://am.example.test", True), "am.yaml", client, **kw) == 0
    )
    assert (
        await channel_file.apply(am("https://am2.example.test", True), "am.yaml", client, **kw) == 0
    )
    assert said[-1] == "am.yaml: 0 created, 1 updated, 0 deleted"
    assert (
        await channel_file.apply(am("https://am3.example.test", False), "am.yaml", client, **kw)
        == 1
    )
    assert "HTTP 400" in said[-2] and "secret must be sent again to change url" in said[-2]
    (item,) = await channel_file.current(client)
    assert item["url"] == "https://am2.example.test" and item["secret"] == "********"
