"""The console's pages over real HTTP: roles (readonly sees no controls and its POSTs are
refused), tenancy (another organization's monitor is a 404), the create form's validation (the
API's, naming the field), the overview's counts and filters."""

import re
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import trustme

from controller.jobs.rules import JobIds
from controller.logins import cap_store as login_caps
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.timefmt import utcnow
from tests.api.helpers import create, opened, stored_row
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish, form_values, store_result


async def test_readonly_sees_no_controls_and_its_posts_are_refused(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    monitor = await create(http, tenant, "smtp")
    page = f"/console/monitors/{monitor['publicId']}"
    client.session = tenant.tokens["owner"]
    owner_view = (await client.get(page)).text
    assert 'id="actions"' in owner_view and "/pause" in owner_view
    client.session = tenant.tokens["readonly"]
    r = await client.get(page)
    assert r.status_code == 200 and monitor["name"] in r.text
    assert 'id="actions"' not in r.text and "/pause" not in r.text and "/delete" not in r.text
    assert "/console/new/smtp" not in (await client.get("/console/")).text
    token = await client.csrf(page)
    for action in ("pause", "delete", "trigger"):
        r = await client.post(f"{page}/{action}", token=token)
        assert r.status_code == 403, action
    assert (await client.get("/console/new/smtp")).status_code == 403
    r = await client.post("/console/new/smtp", {"name": "x"}, token=token)
    assert r.status_code == 403
    row = await pool.fetchrow(
        "SELECT status FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
    )
    assert row is not None and row["status"] == "active"


async def test_another_organizations_monitor_is_a_404_to_read_and_to_change(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    other = await make_tenant(pool)
    theirs = await create(http, other, "smtp", name="Their secret relay")
    client.session = tenant.tokens["owner"]
    page = f"/console/monitors/{theirs['publicId']}"
    assert (await client.get(page)).status_code == 404
    token = await client.csrf()
    for action in ("pause", "delete", "trigger"):
        assert (await client.post(f"{page}/{action}", token=token)).status_code == 404
    overview = (await client.get("/console/?q=secret")).text
    assert "Their secret relay" not in overview
    assert (await client.get("/console/monitors/not-a-uuid")).status_code == 404


async def test_owner_pauses_and_resumes_a_monitor(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    monitor = await create(http, tenant, "smtp")
    page = f"/console/monitors/{monitor['publicId']}"
    client.session = tenant.tokens["member"]
    token = await client.csrf(page)
    r = await client.post(f"{page}/pause", token=token)
    assert (r.status_code, r.headers["location"]) == (303, f"{page}?notice=paused")
    status = "SELECT status FROM monitors WHERE public_id = $1::uuid"
    assert await pool.fetchval(status, monitor["publicId"]) == "disabled"
    assert "Resume" in (await client.get(page)).text
    await client.post(f"{page}/resume", token=token)
    assert await pool.fetchval(status, monitor["publicId"]) == "active"
    r = await client.post(f"{page}/delete", token=token)
    assert (r.status_code, r.headers["location"]) == (303, "/console/?notice=deleted")
    assert await pool.fetchval(status, monitor["publicId"]) is None


async def test_a_paused_monitor_is_shown_paused_never_up(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A paused monitor whose alerter state says up is grey `paused` on the overview and its
    page, with no "as of now": nothing checks it while it is paused."""
    monitor = await create(http, tenant, "smtp", name="Paused relay")
    await pool.execute(
        "INSERT INTO monitor_alert_state (monitor_id, state)"
        " SELECT id, 'up' FROM monitors WHERE public_id = $1::uuid",
        monitor["publicId"],
    )
    page = f"/console/monitors/{monitor['publicId']}"
    client.session = tenant.tokens["member"]
    assert 'data-state="up">up<' in (await client.get(page)).text
    await client.post(f"{page}/pause", token=await client.csrf(page))
    shown = (await client.get(page)).text
    assert 'data-state="paused">paused<' in shown and 'data-state="up"' not in shown
    assert "not checked while paused" in shown
    overview = (await client.get("/console/")).text
    assert 'data-state="paused">paused<' in overview and 'data-state="up"' not in overview


async def test_resuming_past_the_slot_budget_is_refused_on_the_page(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The console's resume is held to ORG_MAX_SLOT_SECONDS_PER_MINUTE (default 60,000) as
    the API's PATCH of `status` is: 1,000 monitors at 300 s / 300 s from one country fill it,
    so resuming a paused one is a 403 with the message on the page, and it stays paused."""
    monitor = await create(http, tenant, "smtp")
    page = f"/console/monitors/{monitor['publicId']}"
    client.session = tenant.tokens["member"]
    token = await client.csrf(page)
    await client.post(f"{page}/pause", token=token)
    await pool.execute(
        "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, status,"
        " check_interval, timeout_seconds, allowed_country_codes)"
        " SELECT $1, $2, 'smtp', 'm' || n, 'mx.example.com', 'active', 300, 300, '{DE}'"
        " FROM generate_series(1, 1000) AS n",
        tenant.org_id,
        tenant.customer_id,
    )
    r = await client.post(f"{page}/resume", token=token)
    assert r.status_code == 403
    assert "ORG_MAX_SLOT_SECONDS_PER_MINUTE" in r.text
    status = "SELECT status FROM monitors WHERE public_id = $1::uuid"
    assert await pool.fetchval(status, monitor["publicId"]) == "disabled"


@pytest.mark.parametrize(
    ("form", "field", "words"),
    [
        ({"port": "smtp"}, "port", "whole number"),
        ({"port": "70000"}, "port", "port"),
        ({"hostname": "bad host name"}, "hostname", "hostname"),
        ({"allowedCheckCountryCodes": "XX"}, "allowedCheckCountryCodes", "XX"),
        ({"timeoutSeconds": "900"}, "timeoutSeconds", "timeout"),
    ],
)
async def test_the_create_form_refuses_what_the_api_refuses_naming_the_field(
    client: Browserish, tenant: Tenant, form: dict[str, str], field: str, words: str
) -> None:
    client.session = tenant.tokens["member"]
    token = await client.csrf("/console/new/smtp")
    values = {
        "customerId": tenant.customer_public_id,
        "name": "Relay",
        "hostname": "smtp.example.com",
        "checkInterval": "60",
        "timeoutSeconds": "30",
        "smtpConfig.tls": "starttls",
        "smtpConfig.auth.user": "relay",
        "smtpConfig.auth.pass": "Secret-9f2",
        **form,
    }
    r = await client.post("/console/new/smtp", values, token=token)
    assert r.status_code == 400, r.text[:300]
    assert words.lower() in r.text.lower()
    assert f'name="{field}"' in r.text and "aria-invalid=true" in r.text
    assert "Secret-9f2" not in r.text  # the password is never put back into the form


async def test_the_form_creates_an_imap_monitor_with_a_write_only_password(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient
) -> None:
    client.session = tenant.tokens["member"]
    token = await client.csrf("/console/new/imap")
    r = await client.post(
        "/console/new/imap",
        {
            "customerId": tenant.customer_public_id,
            "name": "Mailbox",
            "hostname": "imap.example.com",
            "imapPopConfig.tls": "on",
            "imapPopConfig.user": "box@example.com",
            "imapPopConfig.password": "Box-Secret-1",
            "checkInterval": "300",
            "timeoutSeconds": "20",
        },
        token=token,
    )
    assert r.status_code == 303, r.text[:500]
    public_id = r.headers["location"].split("/")[-1].split("?")[0]
    got = await http.get(f"/api/imap-pop-monitors/{public_id}", headers=tenant.auth())
    config = got.json()["imapPopConfig"]
    assert (config["protocol"], config["tls"], config["password"]) == ("imap", True, "********")
    assert got.json()["checkInterval"] == 300
    page = (await client.get(r.headers["location"])).text
    assert "Box-Secret-1" not in page and "The monitor was created" in page


async def test_overview_counts_states_filters_and_shows_country_dots(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    up = await create(http, org, "smtp", name="Alpha relay")
    down = await create(http, org, "smtp", name="Bravo relay")
    mixed = await create(http, org, "smtp", name="Charlie relay")
    await create(http, org, "imap", name="Delta box")
    await store_result(pool, job_ids, up, "DE", "up")
    await store_result(pool, job_ids, down, "DE", "down", error_kind="refused")
    await store_result(pool, job_ids, mixed, "DE", "up")
    await store_result(pool, job_ids, mixed, "US", "down", error_kind="timeout")
    client.session = org.tokens["readonly"]
    r = await client.get("/console/")
    assert r.status_code == 200
    for state, n in (("up", 1), ("down", 1), ("degraded", 1), ("unknown", 1), ("all", 4)):
        assert f'data-count="{state}">{n}<' in r.text, state
    assert 'data-country="US" data-status="down"' in r.text
    only_down = (await client.get("/console/?state=down")).text
    assert "Bravo relay" in only_down and "Alpha relay" not in only_down
    imap = (await client.get("/console/?kind=imap")).text
    assert "Delta box" in imap and "Alpha relay" not in imap
    found = (await client.get("/console/?q=charlie")).text
    assert "Charlie relay" in found and "Bravo relay" not in found
    part = await client.get("/console/monitors.part?state=degraded")
    assert "Charlie relay" in part.text and "<html" not in part.text
    page = (await client.get(f"/console/monitors/{mixed['publicId']}")).text
    assert "<polyline" in page  # the response-time chart, drawn on the server


async def test_the_edit_form_keeps_the_stored_password_and_guards_where_it_goes(
    client: Browserish,
    tenant: Tenant,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
) -> None:
    """An empty password keeps the stored one (never shown); moving the monitor to another
    host without sending the password again is the API's 400 naming the field."""
    monitor = await create(
        http,
        tenant,
        "smtp",
        hostname="smtp.example.com",
        smtpConfig={"requireTls": True, "auth": {"user": "relay", "pass": "Stored-Secret-5"}},
    )
    edit = f"/console/monitors/{monitor['publicId']}/edit"
    client.session = tenant.tokens["readonly"]
    assert (await client.get(edit)).status_code == 403
    client.session = tenant.tokens["member"]
    form = await client.get(edit)
    assert form.status_code == 200
    assert 'value="relay"' in form.text and 'value="smtp.example.com"' in form.text
    assert "Stored-Secret-5" not in form.text and "********" not in form.text
    token = await client.csrf(edit)
    values = {**form_values(form.text), "name": "Renamed relay"}
    assert values["smtpConfig.auth.pass"] == "" and values["smtpConfig.tls"] == "starttls"
    r = await client.post(edit, values, token=token)
    assert (r.status_code, r.headers["location"]) == (
        303,
        f"/console/monitors/{monitor['publicId']}?notice=updated",
    )
    got = await http.get(f"/api/smtp-monitors/{monitor['publicId']}", headers=tenant.auth())
    assert got.json()["name"] == "Renamed relay"
    assert got.json()["smtpConfig"]["auth"] == {"user": "relay", "pass": "********"}
    stored = (await stored_row(pool, monitor["publicId"]))["config"]["auth"]["pass"]
    assert opened(SecretBox(settings.secrets.secrets_key or ""), stored) == "Stored-Secret-5"
    r = await client.post(edit, {**values, "hostname": "evil.example.net"}, token=token)
    assert r.status_code == 400 and "must be sent again" in r.text
    got = await http.get(f"/api/smtp-monitors/{monitor['publicId']}", headers=tenant.auth())
    assert got.json()["hostname"] == "smtp.example.com"


async def test_the_edit_form_keeps_a_pinned_ca_and_the_plaintext_opt_in(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient
) -> None:
    """An edit submitted as the form shows it keeps `tlsOptions` (the CA shown only as set) and
    `allowPlaintextAuth`, with the password left empty or typed again: an edit once dropped a
    pinned CA, so the agent trusted any public CA for the host."""
    ca = trustme.CA().cert_pem.bytes().decode()
    pinned = {"ca": ca, "servername": "relay.internal.test", "rejectUnauthorized": True}
    monitor = await create(
        http,
        tenant,
        "smtp",
        hostname="smtp.example.com",
        smtpConfig={
            "ignoreTls": True,
            "allowPlaintextAuth": True,
            "tlsOptions": pinned,
            "auth": {"user": "relay", "pass": "Stored-Secret-6"},
        },
    )
    edit = f"/console/monitors/{monitor['publicId']}/edit"
    client.session = tenant.tokens["member"]
    token = await client.csrf(edit)
    values = {**form_values((await client.get(edit)).text), "name": "Renamed lab relay"}
    assert values["smtpConfig.tls"] == "plain" and values["smtpConfig.tlsOptions.ca"] == ""
    url = f"/api/smtp-monitors/{monitor['publicId']}"
    for password in ("", "Typed-Again-6"):
        r = await client.post(edit, {**values, "smtpConfig.auth.pass": password}, token=token)
        assert r.status_code == 303, r.text
        config = (await http.get(url, headers=tenant.auth())).json()["smtpConfig"]
        assert {"rejectUnauthorized": True, **config["tlsOptions"]} == pinned
        assert config["ignoreTls"] is True and config["allowPlaintextAuth"] is True
    r = await client.post(edit, {**values, "smtpConfig.tls": "starttls"}, token=token)
    assert r.status_code == 400 and "must be sent again" in r.text  # TLS changed: ignoreTls


async def test_a_refused_action_shows_the_apis_reason_on_the_monitor_page(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient
) -> None:
    """Check now on a paused monitor is the API's 409 with its words; where no check pipeline
    runs, the API's 503."""
    monitor = await create(http, tenant, "smtp", name="Sleeping relay")
    page = f"/console/monitors/{monitor['publicId']}"
    client.session = tenant.tokens["admin"]
    token = await client.csrf(page)
    r = await client.post(f"{page}/trigger", token=token)
    assert r.status_code == 503 and "The check pipeline is not running here" in r.text
    await client.post(f"{page}/pause", token=token)
    r = await client.post(f"{page}/trigger", token=token)
    assert r.status_code == 409 and "The monitor is disabled" in r.text
    assert "Sleeping relay" in r.text


async def test_an_organization_without_monitors_sees_how_to_start(
    client: Browserish, tenant: Tenant
) -> None:
    client.session = tenant.tokens["member"]
    r = await client.get("/console/")
    assert 'data-count="all">0<' in r.text and "No monitors yet" in r.text
    assert 'href="/console/new/smtp">Create an SMTP monitor' in r.text


async def test_a_global_supporter_reads_every_organization_and_changes_nothing(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    helpdesk, customer = await make_tenant(pool, supporter=True), await make_tenant(pool)
    theirs = await create(http, customer, "smtp", name=f"Customer relay {customer.org_id}")
    client.session = helpdesk.tokens["supporter"]
    assert theirs["name"] in (await client.get(f"/console/?q={theirs['name']}")).text
    page = f"/console/monitors/{theirs['publicId']}"
    r = await client.get(page)
    assert r.status_code == 200 and 'id="actions"' not in r.text
    token = await client.csrf(page)
    assert (await client.post(f"{page}/pause", token=token)).status_code == 403
    assert (await client.get("/console/status-pages")).status_code == 403


async def test_the_monitor_page_shows_its_login_cap_while_it_holds(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Pins: a monitor whose account's login cap was reached (a `login_caps` row within the
    last 10 minutes) says so on its page, with since when and the cap; an episode a window
    old, or none, shows nothing. Before, only `GET …/login-backoff` showed it."""
    monitor = await create(http, tenant, "smtp", name="Capped relay")
    page = f"/console/monitors/{monitor['publicId']}"
    client.session = tenant.tokens["readonly"]
    assert 'id="login-cap"' not in (await client.get(page)).text
    since = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
        )
        assert row is not None
        await login_caps.reached(conn, row["id"], 1234, utcnow() - timedelta(minutes=3))
        await conn.execute(
            "UPDATE login_caps SET since = $2 WHERE monitor_id = $1", row["id"], since
        )
    text = re.sub(r"<[^>]+>", "", (await client.get(page)).text)  # as read, without tags
    assert "Logins capped since 2026-03-04 05:06 UTC (cap 1,234 per 10 min)" in text
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE login_caps SET last_at = $2 WHERE monitor_id = $1",
            row["id"],
            utcnow() - timedelta(minutes=11),
        )
    assert 'id="login-cap"' not in (await client.get(page)).text


async def test_the_edit_form_keeps_an_oauth2_grant_it_does_not_show(
    client: Browserish,
    tenant: Tenant,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
) -> None:
    """A monitor logging in with OAuth2 stays so through a console edit (the form has no
    fields for the grant), its secret never on the page, and still bound to the server."""
    grant = {
        "grant": "client_credentials",
        "provider": "microsoft",
        "tenant": "contoso.onmicrosoft.com",
        "clientId": "app",
        "clientSecret": "Grant-Secret-7",
    }
    monitor = await create(
        http,
        tenant,
        "imap",
        hostname="outlook.office365.com",
        imapPopConfig={
            "protocol": "imap",
            "tls": True,
            "user": "probe@contoso.com",
            "oauth2": grant,
        },
    )
    edit = f"/console/monitors/{monitor['publicId']}/edit"
    client.session = tenant.tokens["member"]
    form = await client.get(edit)
    assert form.status_code == 200 and "Grant-Secret-7" not in form.text
    token = await client.csrf(edit)
    values = {**form_values(form.text), "name": "Renamed mailbox"}
    r = await client.post(edit, values, token=token)
    assert r.status_code == 303, r.text
    config = (await stored_row(pool, monitor["publicId"]))["config"]
    assert "password" not in config or not config["password"]
    sealed = config["oauth2"]["clientSecret"]
    assert opened(SecretBox(settings.secrets.secrets_key or ""), sealed) == "Grant-Secret-7"
    assert config["oauth2"]["tenant"] == "contoso.onmicrosoft.com"
    r = await client.post(edit, {**values, "hostname": "evil.example.net"}, token=token)
    assert r.status_code == 400 and "oauth2.clientSecret" in r.text


async def test_the_menu_leads_to_the_reports_of_the_organizations_domains_only(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    other = await make_tenant(pool)
    await create(http, other, "smtp", name="Theirs", mailDomain="their-secret.example")
    client.session = tenant.tokens["readonly"]
    overview = (await client.get("/console/")).text
    assert 'href="/console/reports"' in overview
    empty = (await client.get("/console/reports")).text
    assert 'id="no-domains"' in empty and "their-secret" not in empty
    await create(http, tenant, "smtp", name="Ours", mailDomain="ours.example")
    page = (await client.get("/console/reports")).text
    assert 'href="/console/reports/ours.example"' in page
    assert "their-secret" not in page


async def test_a_monitor_held_down_with_every_country_up_reads_recovering_everywhere(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """The overview's word, count and filter say what the public status page says (one word
    per state on every page), never `down` beside green dots."""
    org = await make_tenant(pool)
    held = await create(http, org, "smtp", name="Held relay")
    still = await create(http, org, "smtp", name="Still down relay")
    for monitor, status in ((held, "up"), (still, "down")):
        for country in ("DE", "US"):
            await store_result(pool, job_ids, monitor, country, status, error_kind="refused")
        await pool.execute(
            "INSERT INTO monitor_alert_state (monitor_id, state)"
            " SELECT id, 'down' FROM monitors WHERE public_id = $1::uuid",
            monitor["publicId"],
        )
    client.session = org.tokens["readonly"]
    overview = (await client.get("/console/")).text
    assert 'data-count="recovering">1<' in overview and 'data-count="down">1<' in overview
    assert 'data-state="recovering">recovering<' in overview
    recovering = (await client.get("/console/?state=recovering")).text
    assert "Held relay" in recovering and "Still down relay" not in recovering
    down = (await client.get("/console/?state=down")).text
    assert "Still down relay" in down and "Held relay" not in down
