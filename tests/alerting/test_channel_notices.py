"""Notification channels beyond incidents, on loopback receivers: the Apprise catch-all (its
JSON plugin to a loopback HTTPS endpoint; failure, retry, private hosts, allowed schemes),
posture findings and credential/login notices told to the monitor's channels under the
severities chosen and the budget, "send a test" that pages no one, and Slack/Teams text in
which a monitor's name cannot become a link or a mention."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from agent.probers.tls import SslContexts
from controller.notify.budget import Budget
from controller.notify.egress import Egress
from controller.notify.links import Links
from controller.scheduling import login_cap_notice
from controller.settings import ControllerSettings
from shared.secret import SECRET_MASK
from testkit.alerting.receivers import (
    APPRISE_PASSWORD,
    APPRISE_PATH,
    CA,
    Receiver,
    client_context,
)
from testkit.peers.smtp import SmtpPeer
from testkit.peers.tls import short_key_leaf
from tests.alerting.conftest import DOWN, PUBLIC_URL, Rig
from tests.alerting.test_channels import (
    SECRETS,
    create,
    granted,
    loopback_api,
    sender,
    worker,
)
from tests.alerting.test_posture import CA as POSTURE_CA
from tests.alerting.test_posture import contexts, round_  # noqa: F401  # the fixture
from tests.conftest import make_tenant

REJECTED = {"DE": "auth", "FR": "auth", "US": "auth"}


@pytest.fixture(autouse=True)
def trust_test_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apprise's requests trusts certifi's bundle, or REQUESTS_CA_BUNDLE: the receivers' CA."""
    bundle = tmp_path / "ca.pem"
    CA.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))


async def history(rig: Rig, api: httpx.AsyncClient, m: asyncpg.Record) -> list[dict[str, Any]]:
    r = await api.get(
        f"/api/smtp-monitors/{m['public_id']}/alert-history", headers=rig.tenant.auth("readonly")
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_apprise_is_retried_through_the_outbox_and_its_url_never_shown(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None)
    async with Receiver("apprise", fail_next=2) as endpoint:
        made = await create(
            channel_api, rig.tenant, "apprise", endpoint.url, monitorIds=[str(m["public_id"])]
        )
        assert made["url"] == f"jsons://{SECRET_MASK}"
        assert APPRISE_PASSWORD not in json.dumps(made) and APPRISE_PATH not in json.dumps(made)
        await rig.rounds(m, 0, [DOWN, DOWN])
        with capture_logs() as logs:
            await worker(rig, sender(rig, settings)).burst()
        (row,) = [r for r in await rig.outbox_rows(m) if r["channel"] == "apprise"]
        assert (row["status"], row["attempts"]) == ("sent", 3)
        assert [s.status for s in endpoint.requests] == [503, 503, 200]
        doc = endpoint.delivered[0].json()
        assert "Outbound relay" in doc["title"] and "DOWN" in doc["message"]
        assert f"{PUBLIC_URL}/console/monitors/{m['public_id']}" in doc["message"]
        lines = [h for h in await history(rig, channel_api, m) if h["channel"] == "apprise"]
        assert sorted((h["attempt"], h["status"]) for h in lines) == [
            (1, "failed"),
            (2, "failed"),
            (3, "sent"),
        ]
        failed = next(h for h in lines if h["status"] == "failed")
        assert failed["error"].startswith("apprise jsons://") and "503" in failed["error"]
        assert failed["target"] == made["id"]
        said = repr(logs) + json.dumps(lines)
        assert APPRISE_PASSWORD not in said and APPRISE_PATH not in said


async def test_apprise_refuses_a_private_host_without_the_setting_and_other_schemes(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None)
    async with Receiver("apprise") as endpoint:
        await create(
            channel_api, rig.tenant, "apprise", endpoint.url, monitorIds=[str(m["public_id"])]
        )
        await rig.rounds(m, 0, [DOWN, DOWN])
        public_only = Egress(ssl_context=client_context(), timeout_s=5)
        await worker(rig, sender(rig, settings, public_only)).burst()
        (row,) = [r for r in await rig.outbox_rows(m) if r["channel"] == "apprise"]
        assert (row["status"], row["attempts"]) == ("failed", 1)  # for good: not retried
        assert (
            "127.0.0.1" in row["last_error"]
            and "NOTIFY_PRIVATE_NETWORK_GRANTS" in row["last_error"]
        )
        assert endpoint.requests == []  # refused before any connection was made
    # The API: schemes outside the allow-list, certificate checks off and broken URLs are 400s.
    for url in (
        "mailto://user:pass@mail.example.com",
        "mqtt://broker.example.com/topic",
        "https://example.com/hook",
        "jsons://example.com/hook?verify=no",
        "jsons://",
    ):
        body = {"name": "x", "kind": "apprise", "url": url}
        r = await channel_api.post(
            "/api/notification-channels", json=body, headers=rig.tenant.auth("admin")
        )
        assert r.status_code == 400 and "url" in r.json()["fields"], (url, r.text)
        assert "pass@" not in r.text


async def test_apprise_plain_http_is_refused_unless_private_networks_are_allowed(
    rig: Rig, settings: ControllerSettings
) -> None:
    from controller.notify import apprise_channel

    assert apprise_channel.url_problem("json://hooks.example.com/x", []) is not None
    assert apprise_channel.url_problem("jsons://hooks.example.com/x", []) is None
    async with Receiver("apprise", tls=False) as endpoint:
        with pytest.raises(Exception, match="plain http"):
            await apprise_channel.send(endpoint.url, "t", "b", [])
        assert endpoint.requests == []


async def test_apprise_reaches_only_the_private_networks_granted_to_its_organization(
    rig: Rig, settings: ControllerSettings, alert_pool: asyncpg.Pool
) -> None:
    """Organization A, granted 127.0.0.2/32, is told there over jsons:// and plain json://;
    outside its grant it is refused at create, as B, with no grant, is; B's channel stored
    while it held a grant since withdrawn is refused when sent, before any connection."""
    a, b = rig.tenant, await make_tenant(alert_pool)
    only_a = granted({a.org_id: ["127.0.0.2/32"]})
    async with (
        loopback_api(settings, alert_pool, only_a) as api,
        Receiver("apprise", host="127.0.0.2") as inside,
        Receiver("apprise", host="127.0.0.2", tls=False) as inside_plain,
        Receiver("apprise", host="127.0.0.3") as outside,
    ):
        for receiver in (inside, inside_plain):
            made = await create(api, a, "apprise", receiver.url)
            t = await api.post(f"/api/notification-channels/{made['id']}/test", headers=a.auth())
            assert t.json() == {"delivered": True, "error": None}, t.text
        for tenant, url in ((a, outside.url), (b, inside.url), (b, inside_plain.url)):
            body = {"name": "x", "kind": "apprise", "url": url}
            r = await api.post("/api/notification-channels", json=body, headers=tenant.auth())
            assert r.status_code == 400 and r.json()["fields"] == ["url"], r.text
            assert "NOTIFY_PRIVATE_NETWORK_GRANTS" in r.json()["message"], r.text
            assert APPRISE_PASSWORD not in r.text
        async with loopback_api(settings, alert_pool, granted({b.org_id: ["127.0.0.2"]})) as b_api:
            made = await create(b_api, b, "apprise", inside.url)
        seen = len(inside.requests)
        t = await api.post(f"/api/notification-channels/{made['id']}/test", headers=b.auth())
        assert t.json()["delivered"] is False, t.text
        assert "NOTIFY_PRIVATE_NETWORK_GRANTS" in t.json()["error"]
        assert len(inside.requests) == seen and outside.requests == []


async def test_findings_and_credential_notices_go_to_the_chosen_channels(
    rig: Rig,
    settings: ControllerSettings,
    channel_api: httpx.AsyncClient,
    contexts: SslContexts,  # noqa: F811
) -> None:
    m = await rig.monitor(["DE"], email=None, phone=None)
    async with Receiver("webhook", SECRETS["webhook"]) as hook:
        await create(channel_api, rig.tenant, "webhook", hook.url, monitorIds=[str(m["public_id"])])
        # A posture finding (a 1024-bit key) on the default severities: told to the channel.
        async with SmtpPeer(starttls=short_key_leaf(POSTURE_CA, 1024)) as short:
            await round_(rig, m, 0, {"DE": short.port}, contexts)
        await worker(rig, sender(rig, settings)).burst()
        (finding,) = [r.json() for r in hook.delivered if r.json()["kind"] == "finding"]
        assert finding["state"] == "notice" and finding["incident"] is None
        assert finding["severity"] in ("critical", "warning")
        assert "1024" in finding["details"] and finding["monitor"]["id"] == str(m["public_id"])

        # Credentials rejected (the login back-off) and a login cap reached: told too.
        await rig.round(m, 1, {"DE": "auth"}, at=rig.clock() - timedelta(seconds=90))
        await rig.alerter.burst()
        async with rig.pool.acquire() as conn, conn.transaction():
            await login_cap_notice.reached(conn, m["id"], 5, rig.clock(), Links(PUBLIC_URL))
        await worker(rig, sender(rig, settings)).burst()
        kinds = sorted(r.json()["kind"] for r in hook.delivered)
        assert {"credentials", "login_cap"} <= set(kinds), kinds
        cred = next(r.json() for r in hook.delivered if r.json()["kind"] == "credentials")
        assert cred["state"] == "notice" and "Credentials rejected" in cred["summary"]

    # The monitor chose no severity for its channels: a finding is not told to them.
    r = await channel_api.put(
        f"/api/smtp-monitors/{m['public_id']}/alert-settings",
        json={"findingChannelSeverities": []},
        headers=rig.tenant.auth("admin"),
    )
    assert r.status_code == 200 and r.json()["effective"]["findingChannelSeverities"] == []
    quiet = await rig.monitor(["DE"], email=None, phone=None, name="Quiet relay")
    r = await channel_api.put(
        f"/api/smtp-monitors/{quiet['public_id']}/alert-settings",
        json={"findingChannelSeverities": []},
        headers=rig.tenant.auth("admin"),
    )
    async with Receiver("webhook", SECRETS["webhook"]) as hook:
        await create(
            channel_api, rig.tenant, "webhook", hook.url, monitorIds=[str(quiet["public_id"])]
        )
        async with SmtpPeer(starttls=short_key_leaf(POSTURE_CA, 1024)) as short:
            await round_(rig, quiet, 0, {"DE": short.port}, contexts)
        await worker(rig, sender(rig, settings)).burst()
        assert [r.json()["kind"] for r in hook.delivered if r.json()["kind"] == "finding"] == []
        assert [r["channel"] for r in await rig.outbox_rows(quiet)] == []


async def test_account_notices_draw_on_their_own_channel_budget(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    """A back-off notice is an account notice: its channel rows draw on the account budget
    (ORG_MAX_ACCOUNT_NOTIFICATIONS_PER_HOUR), never on the outage notices'."""
    m = await rig.monitor(email=None, phone=None)
    async with Receiver("slack") as a, Receiver("teams") as b:
        for kind, r in (("slack", a), ("teams", b)):
            await create(channel_api, rig.tenant, kind, r.url, monitorIds=[str(m["public_id"])])
        await rig.round(m, 0, REJECTED, at=rig.clock() - timedelta(seconds=90))
        await rig.alerter.burst()
        assert await worker(rig, sender(rig, settings), budget=Budget(account=1)).burst() == 1
        rows = [r for r in await rig.outbox_rows(m) if r["kind"] == "credentials"]
        assert sorted(r["status"] for r in rows) == ["dropped", "sent"]
        (dropped,) = [r for r in rows if r["status"] == "dropped"]
        assert "ORG_MAX_ACCOUNT_NOTIFICATIONS_PER_HOUR" in dropped["last_error"]


async def test_send_a_test_pages_no_one(rig: Rig, channel_api: httpx.AsyncClient) -> None:
    async with (
        Receiver("pagerduty", SECRETS["pagerduty"]) as pd,
        Receiver("opsgenie", SECRETS["opsgenie"]) as og,
    ):
        for kind, receiver in (("pagerduty", pd), ("opsgenie", og)):
            made = await create(channel_api, rig.tenant, kind, receiver.url)
            r = await channel_api.post(
                f"/api/notification-channels/{made['id']}/test", headers=rig.tenant.auth("admin")
            )
            assert r.json() == {"delivered": True, "error": None}, (kind, r.text)
        # PagerDuty: one Change Event, no alert (no incident, no page).
        (change,) = pd.changes
        assert "Test of channel" in change["payload"]["summary"]
        assert [s.path for s in pd.requests] == ["/v2/change/enqueue"] and not pd.open_alerts
        # Opsgenie: a P5 alert tagged test, closed by the next request.
        create_req, close_req = og.requests
        assert create_req.json()["priority"] == "P5" and "test" in create_req.json()["tags"]
        assert close_req.path.endswith("/close?identifierType=alias")
        assert og.closed == [create_req.json()["alias"]] and not og.open_alerts


EVIL = "<!channel> [pay here](https://evil.example/x) <https://evil.example|login> @here"


async def test_a_monitor_name_is_never_a_link_or_a_mention_in_slack_or_teams(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None, name=EVIL)
    async with Receiver("slack") as slack, Receiver("teams") as teams:
        for kind, r in (("slack", slack), ("teams", teams)):
            await create(channel_api, rig.tenant, kind, r.url, monitorIds=[str(m["public_id"])])
        await rig.rounds(m, 0, [DOWN, DOWN])
        assert await worker(rig, sender(rig, settings)).burst() == 2

        doc = slack.delivered[0].json()
        raw = slack.delivered[0].body.decode()
        # The notification line is mrkdwn: escaped; the name in blocks is plain_text (literal).
        assert "<!channel>" not in doc["text"] and "&lt;!channel&gt;" in doc["text"]
        assert "<https://evil" not in doc["text"]
        for block in doc["blocks"]:
            texts = [block.get("text") or {}, *block.get("fields", [])]
            for t in texts:
                if t.get("type") == "mrkdwn":  # only mailprobe's own link is mrkdwn
                    assert "evil" not in t["text"] and "Open in mailprobe" in t["text"]
        shown = [f["text"] for b in doc["blocks"] for f in b.get("fields", [])]
        assert any("evil" in t for t in shown)  # the name is there, as plain text
        assert "https://evil.example" not in raw  # and no address a client would link

        card = teams.delivered[0].json()["attachments"][0]["content"]
        assert {b["type"] for b in card["body"]} == {"RichTextBlock"}  # no Markdown TextBlock
        runs = [i["text"] for b in card["body"] for i in b["inlines"]]
        assert any("[pay here]" in t for t in runs)
        assert "https://evil.example" not in teams.delivered[0].body.decode()


HOSTILE_NAME = ("\U0001f525 *down* & <!channel> @here <b>x</b> mx.example: \u202e\u200b" * 9)[:200]


async def test_a_200_character_hostile_name_is_delivered_to_every_kind(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    """Each receiver refuses what its service refuses (a Slack header over 150 characters is
    `invalid_blocks`, for good): every kind takes the notice of a monitor named with 200
    characters of mrkdwn, HTML, mentions, emoji and invisible marks."""
    m = await rig.monitor(email=None, phone=None, name=HOSTILE_NAME)
    kinds = ("webhook", "slack", "teams", "pagerduty", "opsgenie", "telegram", "apprise")
    receivers = {k: Receiver(k, SECRETS.get(k, "")) for k in kinds}
    for r in receivers.values():
        await r.__aenter__()
    try:
        for kind, r in receivers.items():
            extra = {"chatId": "-1001234567890"} if kind == "telegram" else {}
            await create(
                channel_api, rig.tenant, kind, r.url, monitorIds=[str(m["public_id"])], **extra
            )
        await rig.rounds(m, 0, [DOWN, DOWN])
        await worker(rig, sender(rig, settings)).burst()
        rows = await rig.outbox_rows(m)
        assert sorted(r["channel"] for r in rows if r["status"] == "sent") == sorted(kinds), rows
        for kind, r in receivers.items():
            assert [s.status for s in r.requests if s.status >= 300] == [], kind
        header = receivers["slack"].delivered[0].json()["blocks"][0]["text"]["text"]
        assert header.startswith("[mailprobe] DOWN:\u2060 \U0001f525") and header.endswith("…")
    finally:
        for r in receivers.values():
            await r.__aexit__(None, None, None)
