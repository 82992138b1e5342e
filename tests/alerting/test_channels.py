"""Notification channels end to end: the API (rights, isolation, secrets masked), incidents told
to loopback receivers speaking each service's contract (webhook signature and replay window,
Slack, Teams, PagerDuty trigger/resolve, Opsgenie create/close, Debian's Alertmanager), retries
through the outbox, the budget, and private addresses refused unless allowed."""

import ipaddress
import json
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from controller.notify import channel_kinds
from controller.notify.budget import Budget
from controller.notify.channel_send import ChannelSender
from controller.notify.egress import Egress
from controller.notify.links import Links
from controller.notify.outbox import OutboxWorker
from controller.runtime.serve import announce_grants
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.secret import SECRET_MASK
from testkit.alerting.receivers import (
    ALERTMANAGER,
    Alertmanager,
    Receiver,
    client_context,
    verify_signature,
)
from testkit.serving import http_client, serve_app
from tests.alerting.conftest import (
    DOWN,
    PUBLIC_URL,
    UP,
    Rig,
    channel_app,
    loopback_egress,
)
from tests.conftest import Tenant, make_tenant

SECRETS = {
    "webhook": "whsec-signing-k3y-never-logged",
    "pagerduty": "R0UTINGKEY0000000000000000000000",
    "opsgenie": "opsgenie-api-key-never-logged",
    "telegram": "123456:AAbot-token-never-logged",
}


@asynccontextmanager
async def loopback_api(
    settings: ControllerSettings, pool: asyncpg.Pool, egress: Egress | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """`channel_app` served for the block: for the grants of `egress` (the `channel_api`
    fixture serves the default one once)."""
    app = channel_app(settings, pool, egress)
    async with serve_app(app) as url, http_client(base_url=url, timeout=20) as client:
        yield client


def sender(rig: Rig, settings: ControllerSettings, egress: Egress | None = None) -> ChannelSender:
    assert settings.secrets.secrets_key is not None
    return ChannelSender(
        rig.pool,
        SecretBox(settings.secrets.secrets_key),
        egress or loopback_egress(),
        Links(PUBLIC_URL),
        clock=rig.clock,
    )


def worker(rig: Rig, s: ChannelSender, **kwargs: Any) -> OutboxWorker:
    return OutboxWorker(rig.pool, s.channels(), clock=rig.clock, **{"backoff_s": 0, **kwargs})


async def create(
    api: httpx.AsyncClient, tenant: Tenant, kind: str, url: str, **extra: Any
) -> dict[str, Any]:
    body = {"name": f"{kind} on-call", "kind": kind, "url": url, **extra}
    if kind in SECRETS and "secret" not in extra:
        body["secret"] = SECRETS[kind]
    r = await api.post("/api/notification-channels", json=body, headers=tenant.auth("admin"))
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def test_an_incident_is_told_to_each_kind_and_its_recovery_closes_the_pager(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(name="Outbound relay", email=None, phone=None)
    mid = str(m["public_id"])
    receivers = {
        k: Receiver(k, SECRETS.get(k, ""))
        for k in ("webhook", "slack", "teams", "pagerduty", "opsgenie")
    }
    for receiver in receivers.values():
        await receiver.__aenter__()
    try:
        for kind, receiver in receivers.items():
            await create(channel_api, rig.tenant, kind, receiver.url, monitorIds=[mid])
        await rig.rounds(m, 0, [DOWN, DOWN])
        with capture_logs() as logs:
            assert await worker(rig, sender(rig, settings)).burst() == 5
        (incident,) = await rig.incidents(m)

        (hook,) = receivers["webhook"].delivered
        event = hook.json()
        assert event["kind"] == "down" and event["state"] == "down" and event["version"] == 1
        assert event["monitor"]["id"] == mid and event["monitor"]["name"] == "Outbound relay"
        assert event["incident"]["id"] == str(incident["public_id"])
        assert set(event["incident"]["countries"]) == {"DE", "FR"}
        assert event["consoleUrl"] == f"{PUBLIC_URL}/console/monitors/{mid}"
        # The signature holds only within the replay window: the same request later is refused.
        sig = hook.headers["x-mailprobe-signature"]
        assert verify_signature(SECRETS["webhook"], sig, hook.body, time.time())
        assert not verify_signature(SECRETS["webhook"], sig, hook.body, time.time() + 301)
        assert not verify_signature("another-key", sig, hook.body, time.time())
        assert not verify_signature(SECRETS["webhook"], sig, hook.body + b" ", time.time())

        (slack,) = receivers["slack"].delivered
        text = slack.body.decode()
        assert "Outbound relay" in text and "DOWN" in text and "DE, FR" in text
        assert f"<{PUBLIC_URL}/console/monitors/{mid}|Open in mailprobe>" in text
        assert "Cause" in text
        (teams,) = receivers["teams"].delivered
        card = teams.json()["attachments"][0]["content"]
        runs = [[i["text"].replace("\u2060", "") for i in b["inlines"]] for b in card["body"]]
        facts = {r[0].rstrip(": "): r[1] for r in runs[1:] if len(r) == 2}
        assert facts["State"] == "DOWN" and facts["Countries"] == "DE, FR" and facts["Cause"]
        assert card["actions"][0]["url"] == f"{PUBLIC_URL}/console/monitors/{mid}"

        key = f"mailprobe-{mid}-{incident['public_id']}"
        assert list(receivers["pagerduty"].open_alerts) == [key]
        assert receivers["pagerduty"].open_alerts[key]["payload"]["severity"] == "critical"
        assert list(receivers["opsgenie"].open_alerts) == [key]

        await rig.rounds(m, 2, [UP, UP])
        assert await worker(rig, sender(rig, settings)).burst() == 5
        assert receivers["pagerduty"].closed == [key] and not receivers["pagerduty"].open_alerts
        assert receivers["opsgenie"].closed == [key] and not receivers["opsgenie"].open_alerts
        assert receivers["webhook"].delivered[-1].json()["state"] == "up"
        assert "Recovered" in receivers["slack"].delivered[-1].body.decode()

        # Each channel's deliveries are in the monitor's alert history.
        r = await channel_api.get(
            f"/api/smtp-monitors/{mid}/alert-history", headers=rig.tenant.auth("readonly")
        )
        seen = {(h["channel"], h["kind"], h["status"]) for h in r.json()["items"]}
        for kind in receivers:
            assert {(kind, "down", "sent"), (kind, "recovered", "sent")} <= seen
        for secret in SECRETS.values():
            assert secret not in repr(logs)
    finally:
        for receiver in receivers.values():
            await receiver.__aexit__(None, None, None)


async def test_a_failed_delivery_is_retried_through_the_outbox_until_delivered(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None)
    async with Receiver("webhook", SECRETS["webhook"], fail_next=2) as hook:
        made = await create(
            channel_api, rig.tenant, "webhook", hook.url, monitorIds=[str(m["public_id"])]
        )
        await rig.rounds(m, 0, [DOWN, DOWN])
        w = worker(rig, sender(rig, settings))
        with capture_logs() as logs:
            await w.burst()
        (row,) = await rig.outbox_rows(m)
        assert (row["status"], row["attempts"], row["channel"]) == ("sent", 3, "webhook")
        assert row["target"] == made["id"]
        lines = await rig.fetch(
            "SELECT attempt, status, error FROM alert_history WHERE outbox_id = $1 ORDER BY id",
            row["id"],
        )
        assert [(x["attempt"], x["status"]) for x in lines] == [
            (1, "failed"),
            (2, "failed"),
            (3, "sent"),
        ]
        assert lines[0]["error"] == "webhook endpoint 127.0.0.1 answered HTTP 503: busy"
        # Every attempt was signed afresh and carried the same event id.
        assert [s.status for s in hook.requests] == [503, 503, 204]
        assert len({s.headers["x-mailprobe-event"] for s in hook.requests}) == 1
        assert SECRETS["webhook"] not in repr(logs)


async def test_a_refusal_for_good_is_not_retried_and_an_echoed_secret_is_masked(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None)
    async with Receiver("pagerduty", "the-real-routing-key") as pd:
        await create(channel_api, rig.tenant, "pagerduty", pd.url, monitorIds=[str(m["public_id"])])
        await rig.rounds(m, 0, [DOWN, DOWN])
        await worker(rig, sender(rig, settings)).burst()
        (row,) = await rig.outbox_rows(m)
        assert (row["status"], row["attempts"]) == ("failed", 1)
        assert "HTTP 400" in row["last_error"] and "(not retried)" in row["last_error"]
        assert SECRETS["pagerduty"] not in row["last_error"]
        assert f"'routing_key' '{SECRET_MASK}' is invalid" in row["last_error"]


async def test_a_private_address_is_refused_unless_its_network_is_allowed(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None)
    async with Receiver("webhook", SECRETS["webhook"]) as hook:
        await create(channel_api, rig.tenant, "webhook", hook.url, monitorIds=[str(m["public_id"])])
        await rig.rounds(m, 0, [DOWN, DOWN])
        no_grant = Egress(ssl_context=client_context(), timeout_s=5)
        assert await worker(rig, sender(rig, settings, no_grant)).burst() == 0
        (row,) = await rig.outbox_rows(m)
        assert row["status"] == "failed" and "not public" in row["last_error"]
        assert hook.requests == []
        # Names that resolve to loopback are judged by their addresses, and plain http needs
        # a grant too.
        public_only = no_grant.of(rig.tenant.org_id)
        for url in ("https://localhost:1/x", "https://[::1]:1/x", "https://127.1.2.3:1/x"):
            with pytest.raises(Exception, match="not public"):
                await public_only.post(url, b"{}", {})
        assert public_only.url_problem("http://alertmanager.internal/") is not None
        assert public_only.url_problem("https://user:pw@hooks.example.com/") is not None
        assert public_only.url_problem("ftp://hooks.example.com/") is not None
        # Allowed: the same row's next notice goes out.
        await rig.rounds(m, 2, [UP, UP])
        assert await worker(rig, sender(rig, settings)).burst() == 1
        assert hook.delivered[0].json()["kind"] == "recovered"


def granted(grants: dict[int | Literal["*"], list[str]]) -> Egress:
    nets = {org: [ipaddress.ip_network(n) for n in ns] for org, ns in grants.items()}
    return Egress(nets, ssl_context=client_context(), timeout_s=5)


async def test_private_networks_are_granted_per_organization(
    rig: Rig, settings: ControllerSettings, alert_pool: asyncpg.Pool
) -> None:
    """Organization A, granted 127.0.0.2/32, creates, tests and is told at 127.0.0.2 over https
    and plain http; outside its grant (127.0.0.3, a name of 127.0.0.1) it is refused. B, with
    no grant, is refused at create (400 naming `url`), and its channel stored while it held a
    grant since withdrawn fails at delivery, for good, before any connection."""
    a, b = rig.tenant, await make_tenant(alert_pool)
    only_a = granted({a.org_id: ["127.0.0.2/32"]})
    ma, mb = (
        await rig.monitor(email=None, phone=None),
        await rig.monitor(email=None, phone=None, tenant=b),
    )
    key = SECRETS["webhook"]
    async with (
        loopback_api(settings, alert_pool, only_a) as api,
        Receiver("webhook", key, host="127.0.0.2") as inside,
        Receiver("webhook", key, host="127.0.0.2", tls=False) as inside_plain,
        Receiver("webhook", key, host="127.0.0.3") as outside,
        Receiver("webhook", key, host="127.0.0.3", tls=False) as outside_plain,
    ):
        for receiver in (inside, inside_plain):
            made = await create(api, a, "webhook", receiver.url, monitorIds=[str(ma["public_id"])])
            t = await api.post(f"/api/notification-channels/{made['id']}/test", headers=a.auth())
            assert t.json() == {"delivered": True, "error": None}, receiver.url
        await rig.rounds(ma, 0, [DOWN, DOWN])
        assert await worker(rig, sender(rig, settings, only_a)).burst() == 2
        assert [s.json()["kind"] for s in inside.delivered + inside_plain.delivered] == [
            "test",
            "down",
            "test",
            "down",
        ]

        def body(url: str) -> dict[str, str]:
            return {"name": "x", "kind": "webhook", "url": url, "secret": key}

        refused = [
            (a, [outside.url, outside_plain.url, inside.url.replace("127.0.0.2", "127.0.0.1")]),
            (b, [inside.url, inside_plain.url, outside.url]),
        ]
        for tenant, urls in refused:
            for url in urls:
                r = await api.post(
                    "/api/notification-channels", json=body(url), headers=tenant.auth()
                )
                assert r.status_code == 400 and r.json()["fields"] == ["url"], (url, r.text)
                assert "NOTIFY_PRIVATE_NETWORK_GRANTS" in r.json()["message"], r.text
        # A name is judged on the addresses it resolves to, when dialled: localhost is not
        # in A's grant.
        made = await create(api, a, "webhook", inside.url.replace("127.0.0.2", "localhost"))
        t = await api.post(f"/api/notification-channels/{made['id']}/test", headers=a.auth())
        assert t.json()["delivered"] is False and "not public" in t.json()["error"]

        # B's channel, stored while the operator granted B the network, then withdrawn.
        async with loopback_api(settings, alert_pool, granted({b.org_id: ["127.0.0.2"]})) as b_api:
            made = await create(b_api, b, "webhook", inside.url, monitorIds=[str(mb["public_id"])])
        seen = len(inside.requests)
        t = await api.post(f"/api/notification-channels/{made['id']}/test", headers=b.auth())
        assert t.json()["delivered"] is False and "not public" in t.json()["error"]
        await rig.rounds(mb, 0, [DOWN, DOWN])
        assert await worker(rig, sender(rig, settings, only_a)).burst() == 0
        (row,) = await rig.outbox_rows(mb)
        assert (row["status"], row["attempts"]) == ("failed", 1)
        assert "NOTIFY_PRIVATE_NETWORK_GRANTS" in row["last_error"]
        assert len(inside.requests) == seen and outside.requests == outside_plain.requests == []


async def test_serve_names_each_granted_organization_and_warns_of_every_one_and_unknown_ids(
    rig: Rig, settings: ControllerSettings, alert_pool: asyncpg.Pool
) -> None:
    grants = f"{rig.tenant.org_id}=127.0.0.2;*=10.9.0.0/16;{2**62}=192.168.7.0/24"
    configured = settings.replace(notify_private_network_grants=grants)
    with capture_logs() as logs:
        await announce_grants(configured.notify, alert_pool)
    said = [(x["log_level"], x["event"], x.get("organization"), x["networks"]) for x in logs]
    assert said == [
        ("info", "private networks granted", rig.tenant.org_name, ["127.0.0.2/32"]),
        ("warning", "private networks granted to every organization", None, ["10.9.0.0/16"]),
        (
            "warning",
            "private networks granted to an organization id that does not exist",
            None,
            ["192.168.7.0/24"],
        ),
    ]


async def test_rights_isolation_and_write_only_secrets(
    rig: Rig, alert_pool: asyncpg.Pool, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    url = "https://hooks.slack.test/services/T0/B0/sEcReTpAtH"
    body = {"name": "ops", "kind": "slack", "url": url, "monitorIds": [str(m["public_id"])]}
    for role in ("member", "readonly"):
        r = await channel_api.post(
            "/api/notification-channels", json=body, headers=rig.tenant.auth(role)
        )
        assert r.status_code == 403, role
    r = await channel_api.post(
        "/api/notification-channels", json=body, headers=rig.tenant.auth("owner")
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["url"] == f"https://hooks.slack.test/{SECRET_MASK}" and "sEcReT" not in r.text
    hook = await create(channel_api, rig.tenant, "webhook", "https://hooks.example.test/in")
    assert hook["secret"] == SECRET_MASK
    sql = "SELECT url, secret FROM notification_channels WHERE public_id = $1::uuid"
    (sealed,) = await rig.fetch(sql, hook["id"])
    assert sealed["secret"].startswith("enc:v1:") and SECRETS["webhook"] not in sealed["secret"]
    (slack_row,) = await rig.fetch(sql, made["id"])
    assert slack_row["url"].startswith("enc:v1:")

    # Readonly and member users list and read; the mask sent back keeps the secret.
    for role in ("readonly", "member"):
        r = await channel_api.get("/api/notification-channels", headers=rig.tenant.auth(role))
        assert r.status_code == 200 and r.json()["total"] == 2 and "sEcReT" not in r.text
    r = await channel_api.patch(
        f"/api/notification-channels/{hook['id']}",
        json={"secret": SECRET_MASK, "name": "renamed"},
        headers=rig.tenant.auth("admin"),
    )
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    (again,) = await rig.fetch(sql, hook["id"])
    assert again["secret"] == sealed["secret"]
    for role in ("member", "readonly"):
        for method, path in (
            ("PATCH", f"/api/notification-channels/{hook['id']}"),
            ("DELETE", f"/api/notification-channels/{hook['id']}"),
            ("POST", f"/api/notification-channels/{hook['id']}/test"),
        ):
            r = await channel_api.request(
                method,
                path,
                json={"name": "x"} if method == "PATCH" else None,
                headers=rig.tenant.auth(role),
            )
            assert r.status_code == 403, (role, method, path)

    # Another organization sees nothing, can change nothing, and cannot choose it.
    other = await make_tenant(alert_pool)
    for method, path in (
        ("GET", f"/api/notification-channels/{hook['id']}"),
        ("PATCH", f"/api/notification-channels/{hook['id']}"),
        ("DELETE", f"/api/notification-channels/{hook['id']}"),
        ("POST", f"/api/notification-channels/{hook['id']}/test"),
    ):
        r = await channel_api.request(
            method,
            path,
            json={"name": "x"} if method == "PATCH" else None,
            headers=other.auth("owner"),
        )
        assert r.status_code == 404, (method, path)
    r = await channel_api.get("/api/notification-channels", headers=other.auth("owner"))
    assert r.json()["total"] == 0
    r = await channel_api.post(
        "/api/notification-channels",
        json={**body, "url": "https://hooks.slack.test/services/x"},
        headers=other.auth("owner"),
    )
    assert r.status_code == 404 and r.json()["fields"] == ["monitorIds"]
    r = await channel_api.post(
        "/api/notification-channels",
        json={
            "name": "x",
            "kind": "webhook",
            "url": "https://h.test/",
            "secret": "s",
            "customerIds": [rig.tenant.customer_id],
        },
        headers=other.auth("owner"),
    )
    assert r.status_code == 404 and r.json()["fields"] == ["customerIds"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "carrier-pigeon", "url": "https://h.test/"}, "kind"),
        ({"name": "x", "kind": "webhook", "url": "https://h.test/"}, "secret"),
        ({"name": "x", "kind": "webhook", "url": "http://h.test/", "secret": "s"}, "url"),
        ({"name": "x", "kind": "slack"}, "url"),
        ({"name": "x", "kind": "opsgenie"}, "secret"),
        ({"name": "x", "kind": "webhook", "url": "not a url", "secret": "s"}, "url"),
        ({"name": "x\u0000", "kind": "webhook", "url": "https://h.test/", "secret": "s"}, "name"),
        (
            {
                "name": "x",
                "kind": "webhook",
                "url": "https://h.test/",
                "secret": "s",
                "monitorIds": ["nope"],
            },
            "monitorIds",
        ),
        ({"name": "", "kind": "webhook", "url": "https://h.test/", "secret": "s"}, "name"),
        ({"name": "a\u0006b", "kind": "slack", "url": "https://h.test/"}, "name"),
        ({"name": "a\nb", "kind": "slack", "url": "https://h.test/"}, "name"),
        ({"name": " \u3000 ", "kind": "slack", "url": "https://h.test/"}, "name"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    org: Tenant, api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    r = await api.post("/api/notification-channels", json=body, headers=org.auth("admin"))
    assert r.status_code == 400, r.text
    assert field in r.text


async def test_a_channels_name_is_one_line_kept_stripped_on_create_and_change(
    org: Tenant, api: httpx.AsyncClient
) -> None:
    """The rule of every name (validation.name, the document's `name` pattern): white space
    around it is stripped, a control character inside it is a 400 naming the field."""
    body = {"name": "\t Pager \n", "kind": "slack", "url": "https://h.test/"}
    r = await api.post("/api/notification-channels", json=body, headers=org.auth("admin"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "Pager"
    path = f"/api/notification-channels/{created['id']}"
    r = await api.patch(path, json={"name": "Pa\u0011ger"}, headers=org.auth("admin"))
    assert r.status_code == 400 and r.json()["fields"] == ["name"], r.text
    r = await api.patch(path, json={"name": " Night pager "}, headers=org.auth("admin"))
    assert r.status_code == 200 and r.json()["name"] == "Night pager", r.text
    r = await api.patch(path, json={"url": "https://h.test/b"}, headers=org.auth("admin"))
    assert r.status_code == 200 and r.json()["name"] == "Night pager", r.text


async def test_a_customer_default_applies_to_its_monitors_without_their_own_choice(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    plain = await rig.monitor(name="Plain", email=None, phone=None, hostname="a.customer.test")
    chooser = await rig.monitor(name="Chooser", email=None, phone=None, hostname="b.test")
    async with Receiver("slack") as default, Receiver("teams") as own:
        await create(
            channel_api, rig.tenant, "slack", default.url, customerIds=[rig.tenant.customer_id]
        )
        await create(
            channel_api, rig.tenant, "teams", own.url, monitorIds=[str(chooser["public_id"])]
        )
        await rig.rounds(plain, 0, [DOWN, DOWN])
        await rig.rounds(chooser, 0, [DOWN, DOWN])
        assert await worker(rig, sender(rig, settings)).burst() == 2
        assert "Plain" in default.delivered[0].body.decode() and len(default.delivered) == 1
        assert "Chooser" in own.delivered[0].body.decode() and len(own.delivered) == 1


async def test_channel_notices_draw_on_the_organizations_channel_budget(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None)
    async with Receiver("slack") as a, Receiver("teams") as b:
        for kind, r in (("slack", a), ("teams", b)):
            await create(channel_api, rig.tenant, kind, r.url, monitorIds=[str(m["public_id"])])
        await rig.rounds(m, 0, [DOWN, DOWN])
        assert await worker(rig, sender(rig, settings), budget=Budget(channels=1)).burst() == 1
        rows = await rig.outbox_rows(m)
        assert sorted(r["status"] for r in rows if r["channel"] != "email") == ["dropped", "sent"]
        # The owners hear of it by e-mail, outside the budget.
        assert [r["kind"] for r in rows if r["channel"] == "email"] == ["held_back"]
        (dropped,) = [r for r in await rig.outbox_rows(m) if r["status"] == "dropped"]
        assert "ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR" in dropped["last_error"]


async def test_send_a_test_delivers_now_and_reports_a_failure(
    rig: Rig, channel_api: httpx.AsyncClient
) -> None:
    async with (
        Receiver("webhook", SECRETS["webhook"]) as hook,
        Receiver("opsgenie", "right-key") as og,
    ):
        made = await create(channel_api, rig.tenant, "webhook", hook.url)
        r = await channel_api.post(
            f"/api/notification-channels/{made['id']}/test", headers=rig.tenant.auth("admin")
        )
        assert r.status_code == 200 and r.json() == {"delivered": True, "error": None}
        (seen,) = hook.delivered
        assert seen.json()["kind"] == "test"
        made = await create(channel_api, rig.tenant, "opsgenie", og.url, secret="wrong-key")
        r = await channel_api.post(
            f"/api/notification-channels/{made['id']}/test", headers=rig.tenant.auth("owner")
        )
        assert r.status_code == 200 and r.json()["delivered"] is False
        assert "HTTP 401" in r.json()["error"] and "wrong-key" not in r.text


@pytest.mark.skipif(not os.path.exists(ALERTMANAGER), reason="make alertmanager installs it")
async def test_alertmanager_fires_on_down_and_resolves_on_recovery(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(name="Inbound MX", email=None, phone=None)
    with tempfile.TemporaryDirectory() as tmp:
        async with Alertmanager(tmp) as am, http_client(base_url=am.url) as client:
            await create(
                channel_api, rig.tenant, "alertmanager", am.url, monitorIds=[str(m["public_id"])]
            )
            await rig.rounds(m, 0, [DOWN, DOWN])
            assert await worker(rig, sender(rig, settings)).burst() == 1
            (incident,) = await rig.incidents(m)
            (alert,) = (await client.get("/api/v2/alerts")).json()
            labels = alert["labels"]
            assert labels["alertname"] == "MailprobeMonitorDown"
            assert labels["monitor"] == "Inbound MX" and labels["monitor_id"] == str(m["public_id"])
            assert (
                labels["incident"] == str(incident["public_id"])
                and labels["severity"] == "critical"
            )
            assert alert["status"]["state"] == "active"
            assert alert["receivers"][0]["name"] == "mailprobe-oncall"
            assert set(alert["annotations"]["countries"].split(", ")) == {"DE", "FR"}
            await rig.rounds(m, 2, [UP, UP])
            assert await worker(rig, sender(rig, settings)).burst() == 1
            active = (await client.get("/api/v2/alerts", params={"active": "true"})).json()
            assert active == []


def test_the_webhook_event_matches_its_documented_schema() -> None:
    """docs/alerts.md's JSON schema is the event's own (regenerate with
    `channel_kinds.event_schema()`, `json.dumps(…, indent=2)`)."""
    doc = Path(__file__).parents[2] / "docs" / "alerts.md"
    found = re.search(r"<!-- webhook-schema -->\n```json\n(.*?)\n```", doc.read_text(), re.S)
    assert found, "docs/alerts.md has the webhook schema"
    assert json.loads(found.group(1)) == channel_kinds.event_schema()


async def test_a_deleted_channel_keeps_its_history_and_its_pending_notice_fails(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None)
    async with Receiver("slack") as slack:
        made = await create(
            channel_api, rig.tenant, "slack", slack.url, monitorIds=[str(m["public_id"])]
        )
        await rig.rounds(m, 0, [DOWN, DOWN])
        assert await worker(rig, sender(rig, settings)).burst() == 1
        await rig.rounds(m, 2, [UP, UP])  # the recovery is queued, then the channel goes
        r = await channel_api.delete(
            f"/api/notification-channels/{made['id']}", headers=rig.tenant.auth("admin")
        )
        assert r.status_code == 204
        assert await worker(rig, sender(rig, settings)).burst() == 0
        rows = await rig.outbox_rows(m)
        assert [(x["kind"], x["status"]) for x in rows] == [
            ("down", "sent"),
            ("recovered", "failed"),
        ]
        assert rows[1]["last_error"] == "not sent: the channel was deleted"
        lines = await rig.fetch(
            "SELECT kind, status FROM alert_history WHERE monitor_id = $1 ORDER BY id", m["id"]
        )
        assert [(x["kind"], x["status"]) for x in lines] == [
            ("down", "sent"),
            ("recovered", "failed"),
        ]
        assert len(slack.requests) == 1


async def test_telegram_posts_to_its_chat_and_a_wrong_chat_fails_for_good(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(name="Relay <b>&", email=None, phone=None)
    mid = str(m["public_id"])
    async with Receiver("telegram", SECRETS["telegram"]) as tg:
        made = await create(
            channel_api, rig.tenant, "telegram", tg.url, chatId="-1001234567890", monitorIds=[mid]
        )
        assert made["chatId"] == "-1001234567890" and made["secret"] == SECRET_MASK
        lost = await create(
            channel_api, rig.tenant, "telegram", tg.url, chatId="@nobodyhere", monitorIds=[mid]
        )
        await rig.rounds(m, 0, [DOWN, DOWN])
        with capture_logs() as logs:
            assert await worker(rig, sender(rig, settings)).burst() == 1
        (text,) = tg.open_alerts["-1001234567890"]
        assert "Relay &lt;b&gt;&amp;" in text and "DE, FR" in text and "Open in mailprobe" in text
        (failed,) = [r for r in await rig.outbox_rows(m) if r["target"] == lost["id"]]
        assert failed["status"] == "failed" and "chat not found" in failed["last_error"]
        assert SECRETS["telegram"] not in failed["last_error"] + repr(logs)
    r = await channel_api.post(
        "/api/notification-channels",
        json={"name": "t", "kind": "telegram", "secret": "x"},
        headers=rig.tenant.auth("admin"),
    )
    assert r.status_code == 400 and r.json()["fields"] == ["chatId"]


async def test_the_alert_history_names_a_channel_by_its_name(
    rig: Rig, settings: ControllerSettings, channel_api: httpx.AsyncClient
) -> None:
    """ "Alerts sent" shows the channel's name, not its id (an e-mail row keeps its address)."""
    from controller.notify import outbox_store

    m = await rig.monitor(phone=None)
    async with Receiver("slack") as slack:
        made = await create(
            channel_api, rig.tenant, "slack", slack.url, monitorIds=[str(m["public_id"])]
        )
        await rig.rounds(m, 0, [DOWN, DOWN])
        await worker(rig, sender(rig, settings)).burst()
        await rig.outbox().burst()
    async with rig.pool.acquire() as conn:
        history, _ = await outbox_store.list_history(conn, m["id"], 10, 0)
    by_channel = {h.channel: h for h in history}
    assert by_channel["slack"].target == made["id"]
    assert by_channel["slack"].target_name == made["name"]
    assert by_channel["email"].target_name is None
