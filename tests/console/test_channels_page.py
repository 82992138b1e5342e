"""The console's notification channels page: owners and admins add a channel, send it a test
(to a loopback receiver checking the signature) and delete it; readonly users and members only
see the list; another organization's channel is not found; secrets are never shown."""

import ipaddress
import re
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from controller.notify.egress import Egress, Grants
from controller.settings import ControllerSettings
from controller.web.app import create_app
from testkit.alerting.receivers import Receiver, client_context, verify_signature
from testkit.serving import http_client, serve_app
from tests.conftest import make_tenant
from tests.console.helpers import Browserish

SECRET = "console-whsec-never-shown"


@pytest.fixture
async def console(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[Browserish]:
    egress = Egress({"*": [ipaddress.ip_network("127.0.0.0/8")]}, ssl_context=client_context())
    app = create_app(settings, pool, egress=egress)
    async with serve_app(app) as url, http_client(base_url=url, timeout=20) as http:
        yield Browserish(http)


async def test_an_admin_adds_tests_and_deletes_a_channel_others_only_look(
    console: Browserish, pool: asyncpg.Pool
) -> None:
    org, other = await make_tenant(pool), await make_tenant(pool)
    async with Receiver("webhook", SECRET) as hook:
        console.session = org.tokens["admin"]
        token = await console.csrf("/console/channels")
        form = {"name": "On-call hook", "kind": "webhook", "url": hook.url, "secret": SECRET}
        r = await console.post("/console/channels", form, token=token)
        assert r.status_code == 303, r.text[:400]
        page = await console.get("/console/channels")
        assert "On-call hook" in page.text and SECRET not in page.text
        (channel_id,) = re.findall(r"/console/channels/([0-9a-f-]{36})/test", page.text)

        r = await console.post(f"/console/channels/{channel_id}/test", token=token)
        assert r.status_code == 200 and "Test delivered to On-call hook" in r.text
        (seen,) = hook.delivered
        sig = seen.headers["x-mailprobe-signature"]
        assert verify_signature(SECRET, sig, seen.body, time.time())
        assert seen.json()["kind"] == "test"

        r = await console.post("/console/channels", {**form, "kind": "pigeon"}, token=token)
        assert r.status_code == 400 and "Choose a kind" in r.text

        for role in ("member", "readonly"):
            console.session = org.tokens[role]
            page = await console.get("/console/channels")
            assert page.status_code == 200 and "On-call hook" in page.text
            assert "Add channel" not in page.text and SECRET not in page.text
            t = await console.csrf("/console/channels")
            for path in (
                "/console/channels",
                f"/console/channels/{channel_id}/test",
                f"/console/channels/{channel_id}/delete",
            ):
                assert (await console.post(path, form, token=t)).status_code == 403, (role, path)

        console.session = other.tokens["owner"]
        t = await console.csrf("/console/channels")
        assert "On-call hook" not in (await console.get("/console/channels")).text
        for path in (
            f"/console/channels/{channel_id}/test",
            f"/console/channels/{channel_id}/delete",
        ):
            assert (await console.post(path, token=t)).status_code == 404, path
        assert len(hook.requests) == 1

        console.session = org.tokens["owner"]
        t = await console.csrf("/console/channels")
        r = await console.post(f"/console/channels/{channel_id}/delete", token=t)
        assert r.status_code == 303
        assert "On-call hook" not in (await console.get("/console/channels")).text


async def test_a_private_endpoint_needs_a_grant_to_the_admins_own_organization(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    """The console judges a channel's URL on the grant of the admin's organization: the one
    granted 127.0.0.2/32 adds a channel there, another organization's admin is refused."""
    org, other = await make_tenant(pool), await make_tenant(pool)
    nets: Grants = {org.org_id: [ipaddress.ip_network("127.0.0.2/32")]}
    egress = Egress(nets, ssl_context=client_context())
    async with (
        serve_app(create_app(settings, pool, egress=egress)) as url,
        http_client(base_url=url, timeout=20) as http,
        Receiver("webhook", SECRET, host="127.0.0.2") as hook,
    ):
        console = Browserish(http)
        form = {"name": "In-house hook", "kind": "webhook", "url": hook.url, "secret": SECRET}
        console.session = other.tokens["admin"]
        r = await console.post(
            "/console/channels", form, token=await console.csrf("/console/channels")
        )
        assert r.status_code == 400 and "NOTIFY_PRIVATE_NETWORK_GRANTS" in r.text
        assert "In-house hook" not in (await console.get("/console/channels")).text
        console.session = org.tokens["admin"]
        r = await console.post(
            "/console/channels", form, token=await console.csrf("/console/channels")
        )
        assert r.status_code == 303, r.text[:400]
        assert "In-house hook" in (await console.get("/console/channels")).text
