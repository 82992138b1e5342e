"""The monitor forms cover the API: every field of every kind's create body is on its form (a
field the API gains and the form lacks fails here), secrets are write-only (an edit says one is
stored and keeps it; a refused form brings a typed secret back only as a sealed marker that no
other session, form or field can open), errors mark the field they name, and a round trip's
page shows its legs and the phases of its latest rounds."""

import re
from datetime import timedelta
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest
import trustme

from controller.jobs.rules import JobIds
from controller.monitors.kinds import KINDS, ROUNDTRIP
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from controller.web.api.monitor_kinds import api_of
from controller.web.api.monitor_schemas import MASK
from controller.web.console.form_fields import UNSHOWN
from controller.web.console.form_kept import SUFFIX
from controller.web.console.forms import form_of
from tests.api.helpers import create, opened, stored_row
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish, form_values, store_result

TYPES = [(kind, t) for kind in KINDS for t in kind.types]


def schema_leaves(schema: dict[str, Any]) -> set[str]:
    """Every leaf of a JSON schema's object as a dotted path (objects inside nulls too)."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def walk(node: dict[str, Any], prefix: str) -> set[str]:
        node = resolve(node)
        for option in node.get("anyOf", ()):
            found = resolve(option)
            if found.get("type") == "object" and "properties" in found:
                node = found
        if "properties" not in node:
            return {prefix.rstrip(".")}
        out: set[str] = set()
        for name, sub in node["properties"].items():
            out |= walk(sub, f"{prefix}{name}.")
        return out

    return walk(schema, "")


@pytest.mark.parametrize(("kind", "monitor_type"), TYPES, ids=[t for _, t in TYPES])
def test_every_field_of_the_apis_create_body_is_on_the_form(kind: Any, monitor_type: str) -> None:
    """The JSON schema of the kind's create body (as /schema publishes it) against the form's
    fields: none missing but those `UNSHOWN` names with a reason, none made up, every secret of
    the registry a write-only field, and no field of `secretEnv` (variable names for
    monitors as code, not secrets)."""
    schema = msgspec.json.schema(api_of(kind).create)
    leaves = schema_leaves(schema)
    wanted = {
        path
        for path in leaves
        if path.rsplit(".", 1)[-1] not in UNSHOWN
        and path.split(".")[0] not in UNSHOWN  # `config`, the config key's alias; `secretEnv`
        and path != "status"
    }
    form = form_of(monitor_type)
    covered = {p for f in form.fields for p in f.paths}
    assert wanted - covered == set(), f"on the API, not on the {monitor_type} form"
    assert covered - leaves == set(), "on the form, not in the API"
    assert not [p for p in covered if p.startswith("secretEnv")]
    for path in (*kind.secrets, *kind.grant_secrets):
        assert form.field(f"{kind.config_key}.{path}").secret, path
    assert {"tlsOptions.ca", "notificationPhoneNumber", "mailDomain"} <= {
        ".".join(p.split(".")[-2:]) if "tlsOptions" in p else p for p in covered
    }


def _pem_body(pem: str) -> str:
    return pem.splitlines()[3]  # a line of the certificate's base64, never in a page


async def _new_form(client: Browserish, monitor_type: str) -> dict[str, str]:
    return form_values((await client.get(f"/console/new/{monitor_type}")).text)


async def test_a_form_sets_tls_options_sms_mail_domain_and_an_oauth2_login(
    client: Browserish,
    tenant: Tenant,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
) -> None:
    """What the form creates is what the API shows: the CA (normalised), the SNI name, the
    certificate check off, the SMS number, the mail domain, its DKIM selectors (a list typed
    with commas, stored lower case) and an OAuth2 grant (its secret
    stored sealed); the edit form then says the CA and the secret are set without showing
    them, keeps both when left empty, and removes the CA when asked."""
    client.session = tenant.tokens["member"]
    ca = trustme.CA().cert_pem.bytes().decode()
    values = {
        **await _new_form(client, "imap"),
        "customerId": tenant.customer_public_id,
        "name": "Contoso box",
        "hostname": "outlook.office365.com",
        "imapPopConfig.tls": "on",
        "imapPopConfig.user": "probe@contoso.com",
        "imapPopConfig.tlsOptions.ca": ca,
        "imapPopConfig.tlsOptions.servername": "mail.contoso.test",
        "imapPopConfig.oauth2.grant": "client_credentials",
        "imapPopConfig.oauth2.provider": "microsoft",
        "imapPopConfig.oauth2.tenant": "contoso.onmicrosoft.com",
        "imapPopConfig.oauth2.clientId": "client-1",
        "imapPopConfig.oauth2.clientSecret": "Grant-Secret-8",
        "notificationPhoneNumber": "+4915112345678",
        "mailDomain": "contoso.test",
        "dkimSelectors": "Mail2026, selector1",
    }
    del values["imapPopConfig.tlsOptions.rejectUnauthorized"]  # unticked
    token = await client.csrf("/console/new/imap")
    r = await client.post("/console/new/imap", values, token=token)
    assert r.status_code == 303, r.text[:3000]
    public_id = r.headers["location"].split("/")[-1].split("?")[0]
    url = f"/api/imap-pop-monitors/{public_id}"
    got = (await http.get(url, headers=tenant.auth())).json()
    config = got["imapPopConfig"]
    assert config["tlsOptions"]["servername"] == "mail.contoso.test"
    assert config["tlsOptions"]["rejectUnauthorized"] is False
    assert _pem_body(ca) in config["tlsOptions"]["ca"]
    assert (got["notificationPhoneNumber"], got["mailDomain"]) == ("+4915112345678", "contoso.test")
    assert got["dkimSelectors"] == ["mail2026", "selector1"]
    grant = config["oauth2"]
    assert (grant["grant"], grant["tenant"], grant["clientSecret"]) == (
        "client_credentials",
        "contoso.onmicrosoft.com",
        MASK,
    )
    stored = (await stored_row(pool, public_id))["config"]
    box = SecretBox(settings.secrets.secrets_key or "")
    assert opened(box, stored["oauth2"]["clientSecret"]) == "Grant-Secret-8"

    edit = f"/console/monitors/{public_id}/edit"
    page = (await client.get(edit)).text
    assert "Grant-Secret-8" not in page and _pem_body(ca) not in page and MASK not in page
    assert 'data-secret="imapPopConfig.oauth2.clientSecret">set — leave empty to keep' in page
    assert 'data-ca="imapPopConfig.tlsOptions.ca">set: 1 certificate — leave empty to keep' in page
    shown = form_values(page)
    assert shown["mailDomain"] == "contoso.test" and shown["imapPopConfig.oauth2.tenant"]
    assert shown["dkimSelectors"] == "mail2026, selector1"
    r = await client.post(edit, {**shown, "name": "Contoso mailbox"}, token=token)
    assert r.status_code == 303, r.text[:3000]
    after = (await http.get(url, headers=tenant.auth())).json()
    assert after["imapPopConfig"] == config and after["name"] == "Contoso mailbox"
    assert after["dkimSelectors"] == ["mail2026", "selector1"]
    again = (await stored_row(pool, public_id))["config"]
    assert opened(box, again["oauth2"]["clientSecret"]) == "Grant-Secret-8"

    # The secret is bound to the CA: removing it asks for the secret again, naming it.
    cleared = {**shown, "imapPopConfig.tlsOptions.ca~clear": "on", "mailDomain": ""}
    r = await client.post(edit, cleared, token=token)
    assert r.status_code == 400 and 'id="err-imapPopConfig-oauth2-clientSecret"' in r.text
    assert 'name="imapPopConfig.tlsOptions.ca~clear" checked' in r.text
    cleared["imapPopConfig.oauth2.clientSecret"] = "Grant-Secret-8"
    r = await client.post(edit, cleared, token=token)
    assert r.status_code == 303, r.text[:3000]
    after = (await http.get(url, headers=tenant.auth())).json()
    assert "ca" not in after["imapPopConfig"]["tlsOptions"] and "mailDomain" not in after
    assert after["imapPopConfig"]["oauth2"]["clientSecret"] == MASK


async def test_a_refused_form_comes_back_filled_in_with_the_secret_sealed(
    client: Browserish,
    tenant: Tenant,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
) -> None:
    """A bad port: the page comes back 400 with the message at the port, every entry as
    typed, the password nowhere in it but as a marker; submitting it again (password left
    empty) stores the password typed the first time."""
    client.session = tenant.tokens["member"]
    token = await client.csrf("/console/new/smtp")
    values = {
        **await _new_form(client, "smtp"),
        "customerId": tenant.customer_public_id,
        "name": "Relay <b>1</b>",
        "hostname": "smtp.example.com",
        "port": "70000",
        "smtpConfig.auth.user": "relay",
        "smtpConfig.auth.pass": "Typed-Secret-9",
        "notificationPhoneNumber": "+4915112345678",
    }
    r = await client.post("/console/new/smtp", values, token=token)
    assert r.status_code == 400, r.text[:500]
    assert "Typed-Secret-9" not in r.text and "<b>1</b>" not in r.text
    assert 'name="port" value="70000"' in r.text and 'id="err-port"' in r.text
    assert 'data-secret="smtpConfig.auth.pass">entered — leave empty to keep' in r.text
    again = form_values(r.text)
    marker = again[f"smtpConfig.auth.pass{SUFFIX}"]
    assert again["name"] == "Relay <b>1</b>" and again["smtpConfig.auth.pass"] == ""
    assert again["notificationPhoneNumber"] == "+4915112345678"

    # The marker opens only for its session, form and field: another member's session, or
    # moved to another field, it is nothing (and the API then stores no password).
    other = Browserish(client.http, tenant.tokens["admin"])
    theirs = await other.csrf("/console/new/smtp")
    stolen = {**again, "port": "587", "name": "Stolen"}
    r = await other.post("/console/new/smtp", stolen, token=theirs)
    assert r.status_code == 303, r.text[:2000]
    moved = {
        **again,
        "port": "587",
        "name": "Moved",
        f"smtpConfig.auth.pass{SUFFIX}": "",
        f"smtpConfig.auth.oauth2.clientSecret{SUFFIX}": marker,
    }
    r = await client.post("/console/new/smtp", moved, token=token)
    assert r.status_code == 303, r.text[:2000]
    tampered = {**again, "port": "587", "name": "Tampered", f"smtpConfig.auth.pass{SUFFIX}": "x"}
    r = await client.post("/console/new/smtp", tampered, token=token)
    assert r.status_code == 303, r.text[:2000]
    for name in ("Stolen", "Moved", "Tampered"):
        [item] = (
            await http.get(f"/api/smtp-monitors?search={name}", headers=tenant.auth())
        ).json()["items"]
        assert not item["smtpConfig"]["auth"].get("pass"), name

    r = await client.post("/console/new/smtp", {**again, "port": "587"}, token=token)
    assert r.status_code == 303, r.text[:2000]
    public_id = r.headers["location"].split("/")[-1].split("?")[0]
    stored = (await stored_row(pool, public_id))["config"]
    assert (
        opened(SecretBox(settings.secrets.secrets_key or ""), stored["auth"]["pass"])
        == "Typed-Secret-9"
    )


async def test_a_refused_edit_keeps_a_newly_typed_password_and_names_the_field(
    client: Browserish,
    tenant: Tenant,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
) -> None:
    monitor = await create(
        http,
        tenant,
        "smtp",
        hostname="smtp.example.com",
        smtpConfig={"requireTls": True, "auth": {"user": "relay", "pass": "Old-Secret-1"}},
    )
    edit = f"/console/monitors/{monitor['publicId']}/edit"
    client.session = tenant.tokens["member"]
    page = await client.get(edit)
    assert 'data-secret="smtpConfig.auth.pass">set — leave empty to keep' in page.text
    token = await client.csrf(edit)
    values = {
        **form_values(page.text),
        "smtpConfig.auth.pass": "New-Secret-2",
        "timeoutSeconds": "9999",
    }
    r = await client.post(edit, values, token=token)
    assert r.status_code == 400 and "New-Secret-2" not in r.text and "Old-Secret-1" not in r.text
    assert re.search(r'name="timeoutSeconds" value="9999"[^>]*aria-invalid=true', r.text), r.text
    assert 'id="err-timeoutSeconds"' in r.text
    again = form_values(r.text)
    r = await client.post(edit, {**again, "timeoutSeconds": "30"}, token=token)
    assert r.status_code == 303, r.text[:2000]
    stored = (await stored_row(pool, monitor["publicId"]))["config"]
    assert (
        opened(SecretBox(settings.secrets.secrets_key or ""), stored["auth"]["pass"])
        == "New-Secret-2"
    )


async def test_a_round_trip_page_shows_its_legs_and_the_phases_of_its_latest_rounds(
    client: Browserish, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    body = {
        **cast(dict[str, Any], api_of(ROUNDTRIP).create_examples[0].value),
        "customerId": org.customer_public_id,
    }
    r = await http.post(api_of(ROUNDTRIP).path, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    monitor = r.json()
    phases = {"submitMs": 120.0, "deliveryMs": 4200.0, "fetchMs": 80.0}
    for country, ago in (("DE", 2), ("US", 3)):
        await store_result(
            pool,
            job_ids,
            monitor,
            country,
            "up",
            ago=timedelta(minutes=ago),
            monitor_type="roundtrip",
            phases=phases,
            folder="INBOX",
            response_ms=4400.0,
        )
    client.session = org.tokens["readonly"]
    r = await client.get(f"/console/monitors/{monitor['publicId']}")
    assert r.status_code == 200
    # the port on the line of the last label: it never wraps (hosts.host, console.css)
    assert (
        'data-leg="send"' in r.text
        and 'smtp.<wbr>example.<wbr><span class="nowrap">com<span class="port">:587<' in r.text
    )
    assert (
        'data-leg="receive"' in r.text
        and 'imap.<wbr>example.<wbr><span class="nowrap">net<span class="port">:993<' in r.text
    )
    assert "probe@example.net" in r.text and "password" not in r.text.split('id="legs"')[1][:50]
    assert 'data-country="DE"' in r.text and 'data-phase="delivery">4200 ms' in r.text
    assert "DELIVERY" in r.text  # the phase chart's round-trip lines
    assert MASK not in r.text


async def test_a_round_trip_page_shows_each_countrys_verdicts_escaped_with_their_meaning(
    client: Browserish, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    body = {
        **cast(dict[str, Any], api_of(ROUNDTRIP).create_examples[0].value),
        "customerId": org.customer_public_id,
    }
    r = await http.post(api_of(ROUNDTRIP).path, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    monitor = r.json()
    phases = {"submitMs": 120.0, "deliveryMs": 4200.0, "fetchMs": 80.0}
    hostile = '<script>x</script>"'
    # an older round of DE with other verdicts: only the latest one per country is shown
    for country, ago, auth, arc in (
        ("DE", 9, {"spf": "fail", "dkim": "fail", "dmarc": "fail"}, None),
        (
            "DE",
            2,
            {"spf": "pass", "dkim": "pass", "dmarc": "softfail"},
            {"instances": 1, "cv": "pass"},
        ),
        ("US", 3, {"spf": "none", "dkim": hostile}, None),
    ):
        await store_result(
            pool,
            job_ids,
            monitor,
            country,
            "up",
            ago=timedelta(minutes=ago),
            monitor_type="roundtrip",
            phases=phases,
            folder="INBOX",
            auth_results=auth,
            arc=arc,
        )
    client.session = org.tokens["readonly"]
    r = await client.get(f"/console/monitors/{monitor['publicId']}")
    assert r.status_code == 200
    rows = dict(re.findall(r'<tr data-country="(\w+)">(.*?)</tr>', r.text))
    cell = r'data-verdict="(\w+)"><span class="verdict (\w+)" title="[^"]*">([^<]*)<'
    de = {m: text for m, _, text in re.findall(cell, rows["DE"])}
    us = {m: level for m, level, _ in re.findall(cell, rows["US"])}
    assert de == {"spf": "pass", "dkim": "pass", "dmarc": "softfail", "arc": "pass"}, rows
    assert us == {"spf": "none", "dkim": "other", "dmarc": "unstated", "arc": "unstated"}, rows
    # the stranger's value is text, never markup, and never leaves its attribute
    assert "<script>x" not in r.text
    assert "&lt;script&gt;x&lt;/script&gt;&#34;" in rows["US"]
    assert 'title="DKIM: not a standard verdict' in rows["US"]
    assert 'title="SPF: passed: the sender is authorised' in rows["DE"]
    legend = r.text.split('id="verdict-legend"')[1].split("</p>")[0]
    for level in ("pass", "softfail", "none"):
        assert f"<b>{level}</b>" in legend
    assert "<b>fail</b>" not in legend  # only DE's older round said fail


async def test_a_graph_round_trip_is_on_the_form_and_its_page_names_the_api(
    client: Browserish, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The round trip's form offers each leg's mailbox API and the mailbox's cleanup; a Graph
    round trip's page says its legs go over Microsoft Graph (HTTPS) and what it does with the
    message it found."""
    org = await make_tenant(pool)
    client.session = org.tokens["member"]
    page = (await client.get("/console/new/roundtrip")).text
    for name in ("roundtripConfig.send.api", "roundtripConfig.receive.api"):
        assert re.search(rf'<select[^>]*name="{re.escape(name)}"', page), name
    assert '<option value="graph"' in page
    assert re.search(r'<select[^>]*name="roundtripConfig\.receive\.cleanup"', page)
    grant = {
        "provider": "microsoft",
        "tenant": "contoso.com",
        "grant": "client_credentials",
        "clientId": "app",
        "clientSecret": "s3cret",
    }
    body = {
        "customerId": org.customer_public_id,
        "name": "Mail over Graph",
        "roundtripConfig": {
            "send": {
                "api": "graph",
                "hostname": "graph.microsoft.com",
                "auth": {"user": "sender@contoso.com", "oauth2": grant},
            },
            "to": "probe@contoso.com",
            "receive": {
                "api": "graph",
                "hostname": "graph.microsoft.com",
                "user": "probe@contoso.com",
                "oauth2": grant,
                "cleanup": "delete",
            },
        },
    }
    r = await http.post(api_of(ROUNDTRIP).path, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    client.session = org.tokens["readonly"]
    legs = (await client.get(f"/console/monitors/{r.json()['publicId']}")).text
    legs = legs.split('id="legs"')[1].split("</table>")[0]
    assert "Send (Microsoft Graph)" in legs and "Receive (Microsoft Graph)" in legs
    assert "HTTPS" in legs and "found message deleted" in legs and "s3cret" not in legs


async def test_a_mailbox_check_over_graph_is_made_on_the_form_and_its_page_names_the_api(
    client: Browserish, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The IMAP/POP form offers the mailbox API; made with `graph`, no host and an app's
    client credentials, the monitor watches Graph's public host and its page says so."""
    org = await make_tenant(pool)
    client.session = org.tokens["member"]
    values = {
        **await _new_form(client, "imap"),
        "customerId": org.customer_public_id,
        "name": "Inbox over Graph",
        "hostname": "",
        "imapPopConfig.api": "graph",
        "imapPopConfig.user": "probe@contoso.com",
        "imapPopConfig.oauth2.grant": "client_credentials",
        "imapPopConfig.oauth2.provider": "microsoft",
        "imapPopConfig.oauth2.tenant": "contoso.onmicrosoft.com",
        "imapPopConfig.oauth2.clientId": "client-1",
        "imapPopConfig.oauth2.clientSecret": "Grant-Secret-8",
    }
    assert "imapPopConfig.api" in values  # the form has the field
    token = await client.csrf("/console/new/imap")
    r = await client.post("/console/new/imap", values, token=token)
    assert r.status_code == 303, r.text[:3000]
    public_id = r.headers["location"].split("/")[-1].split("?")[0]
    shown = (await http.get(f"/api/imap-pop-monitors/{public_id}", headers=org.auth())).json()
    assert shown["hostname"] == "graph.microsoft.com"
    assert shown["imapPopConfig"]["api"] == "graph"
    page = (await client.get(f"/console/monitors/{public_id}")).text
    assert '<span id="via-api">over Microsoft Graph</span>' in page
    assert "Grant-Secret-8" not in page
