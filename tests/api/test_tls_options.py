"""`tlsOptions.ca` and `tlsOptions.servername` over real HTTP: stored and shown as sent on every
kind, refused with a 400 naming the field when the CA is not usable, and bound to the stored
password like every TLS option (a new CA or server name needs the password again)."""

from typing import Any, cast

import asyncpg
import httpx
import pytest
import trustme

from controller.monitors.tls_options import CA_MAX_BYTES
from controller.scheduling.job_config import job_config
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.messages import ImapPopConfig, SmtpConfig
from tests.api.helpers import IMAP, MASK, SMTP, assert_error, create, minimal_body, stored_row
from tests.api.test_roundtrip_monitors import RT
from tests.api.test_roundtrip_monitors import body as roundtrip_body
from tests.conftest import Tenant

CA_PEM = trustme.CA().cert_pem.bytes().decode()
OTHER_PEM = trustme.CA().cert_pem.bytes().decode()
TWO_PEMS = CA_PEM + OTHER_PEM
KEY_PEM = trustme.CA().private_key_pem.bytes().decode()


@pytest.mark.parametrize(
    ("path", "key", "config"),
    [
        (SMTP, "smtpConfig", {"secure": True}),
        (IMAP, "imapPopConfig", {"protocol": "imap", "tls": True}),
        (IMAP, "imapPopConfig", {"protocol": "pop3", "tls": False}),
    ],
)
async def test_ca_and_servername_are_stored_shown_and_sent_in_jobs(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    path: str,
    key: str,
    config: dict[str, Any],
) -> None:
    """A bundle of two CAs and a server name: 201, shown as sent (they are not secrets), and
    the job built from the stored row carries them to the agent."""
    tls = {"rejectUnauthorized": True, "ca": TWO_PEMS, "servername": "mail.corp.internal"}
    body = minimal_body(tenant, **{key: {**config, "tlsOptions": tls}})
    r = await http.post(path, json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert r.json()[key]["tlsOptions"] == tls
    row = await stored_row(pool, r.json()["publicId"])
    job = job_config(row["type"], row["config"], SecretBox(settings.secrets.secrets_key or ""))
    job = cast(SmtpConfig | ImapPopConfig, job)  # an SMTP or IMAP/POP3 monitor's
    assert (job.tls_options.ca, job.tls_options.servername) == (TWO_PEMS, "mail.corp.internal")


async def test_null_ca_and_servername_are_the_defaults_and_not_stored(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    cfg = {"tlsOptions": {"ca": None, "servername": None}}
    r = await http.post(SMTP, json=minimal_body(tenant, smtpConfig=cfg), headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert r.json()["smtpConfig"] == {"tlsOptions": {}}


BROKEN_PEM = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
LOWER_KEY = KEY_PEM.lower()
BAD_TLS: list[tuple[str, dict[str, Any], str, str]] = [
    ("smtpConfig", {"ca": "x"}, "tlsOptions.ca", "PEM certificates"),
    ("smtpConfig", {"ca": BROKEN_PEM}, "tlsOptions.ca", "is not a valid certificate"),
    ("smtpConfig", {"ca": CA_PEM + LOWER_KEY}, "tlsOptions.ca", "private key"),
    ("smtpConfig", {"ca": CA_PEM + "trailing words"}, "tlsOptions.ca", "text outside"),
    ("imapPopConfig", {"ca": CA_PEM + LOWER_KEY}, "tlsOptions.ca", "private key"),
    ("imapPopConfig", {"ca": CA_PEM.lower()}, "tlsOptions.ca", "labelled 'certificate'"),
    ("config", {"ca": "notes\n" + CA_PEM}, "tlsOptions.ca", "text outside"),
    ("smtpConfig", {"ca": ""}, "tlsOptions.ca", "length"),
    (
        "smtpConfig",
        {"ca": CA_PEM * (CA_MAX_BYTES // len(CA_PEM) + 1)},
        "tlsOptions.ca",
        f"at most {CA_MAX_BYTES} bytes",
    ),
    ("smtpConfig", {"ca": CA_PEM + KEY_PEM}, "tlsOptions.ca", "private key"),
    ("smtpConfig", {"ca": 5}, "tlsOptions.ca", "Expected `str"),
    ("imapPopConfig", {"ca": BROKEN_PEM}, "tlsOptions.ca", "is not a valid certificate"),
    ("imapPopConfig", {"servername": "mail corp"}, "tlsOptions.servername", "hostname"),
    ("config", {"servername": "https://mail.corp/"}, "tlsOptions.servername", "hostname"),
    ("imapPopConfig", {"servername": ""}, "tlsOptions.servername", "length"),
]


@pytest.mark.parametrize(
    ("path", "key", "config"),
    [
        (SMTP, "smtpConfig", {"secure": True}),
        (IMAP, "imapPopConfig", {"protocol": "imap", "tls": True}),
        (IMAP, "imapPopConfig", {"protocol": "pop3", "tls": True}),
    ],
)
async def test_a_ca_is_stored_and_shown_re_encoded(
    http: httpx.AsyncClient, tenant: Tenant, path: str, key: str, config: dict[str, Any]
) -> None:
    """CRLF line ends, indentation and blank lines around the certificates are not stored: the
    certificates are, re-encoded as PEM."""
    sent = "\r\n  " + CA_PEM.replace("\n", "\r\n  ") + "\n\n" + OTHER_PEM + "\n"
    body = minimal_body(tenant, **{key: {**config, "tlsOptions": {"ca": sent}}})
    r = await http.post(path, json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert r.json()[key]["tlsOptions"]["ca"] == TWO_PEMS


@pytest.mark.parametrize(("key", "tls", "field", "says"), BAD_TLS)
async def test_an_unusable_ca_or_servername_is_a_400_naming_it(
    http: httpx.AsyncClient, tenant: Tenant, key: str, tls: dict[str, Any], field: str, says: str
) -> None:
    """The parse error is in the message; a private key pasted with the CA is refused (it would
    be shown in every response); nothing is created."""
    path = IMAP if key == "imapPopConfig" else SMTP
    r = await http.post(
        path, json=minimal_body(tenant, **{key: {"tlsOptions": tls}}), headers=tenant.auth()
    )
    error = assert_error(r, 400, fields=[f"{key}.{field}"])
    assert says in error["message"]
    key_line = KEY_PEM.splitlines()[1]
    assert key_line not in r.text and key_line.lower() not in r.text
    assert "PRIVATE KEY-----" not in r.text.upper() and "trailing words" not in r.text
    listed = await http.get(path, headers=tenant.auth())
    assert listed.json()["total"] == 0


STORED: dict[str, Any] = {
    "hostname": "smtp.example.com",
    "port": 587,
    "smtpConfig": {
        "auth": {"user": "billing", "pass": "stored-pass"},
        "tlsOptions": {"ca": CA_PEM},
    },
}
KEPT = {"user": "billing", "pass": MASK}
MOVES = [
    ({"ca": OTHER_PEM}, "smtpConfig.tlsOptions.ca"),
    ({}, "smtpConfig.tlsOptions.ca"),
    ({"ca": CA_PEM, "servername": "evil.example"}, "smtpConfig.tlsOptions.servername"),
]


@pytest.mark.parametrize(("tls", "named"), MOVES, ids=["other CA", "CA removed", "servername"])
async def test_a_new_ca_or_servername_needs_the_password_again(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    tls: dict[str, Any],
    named: str,
) -> None:
    """A member who may edit the monitor could otherwise trust a CA of their own (or take the
    system store back) and have the kept password sent to a server they run: 400 naming the
    password; with the password sent again it is a 200."""
    created = await create(http, tenant, role="member", **STORED)
    url = f"{SMTP}/{created['publicId']}"
    change = {"smtpConfig": {"auth": KEPT, "tlsOptions": tls}}
    r = await http.patch(url, json=change, headers=tenant.auth("member"))
    error = assert_error(r, 400, fields=["smtpConfig.auth.pass"], code="secret_required")
    assert f"to change {named}:" in error["message"]

    same = {"smtpConfig": {"auth": KEPT, "tlsOptions": {"ca": CA_PEM}}}
    r = await http.patch(url, json=same, headers=tenant.auth("member"))
    assert r.status_code == 200, r.text

    resent = {"smtpConfig": {"auth": {**KEPT, "pass": "sent-again"}, "tlsOptions": tls}}
    r = await http.patch(url, json=resent, headers=tenant.auth("member"))
    assert r.status_code == 200, r.text
    row = await stored_row(pool, created["publicId"])
    assert (
        SecretBox(settings.secrets.secrets_key or "").open(row["config"]["auth"]["pass"])
        == "sent-again"
    )


@pytest.mark.parametrize("leg", ["send", "receive"])
async def test_a_round_trip_legs_ca_is_certificates_only(
    http: httpx.AsyncClient, tenant: Tenant, leg: str
) -> None:
    """Each leg of a round trip takes a CA by the same rule: a key after the certificate is a
    400 naming the leg's field, and a CA with CRLF line ends is stored re-encoded."""
    field = f"roundtripConfig.{leg}.tlsOptions.ca"
    refused = roundtrip_body(tenant, **{f"{leg}__tlsOptions": {"ca": CA_PEM + KEY_PEM}})
    r = await http.post(RT, json=refused, headers=tenant.auth())
    error = assert_error(r, 400, fields=[field])
    assert error["message"] == f"{field} holds a private key; give certificates only"
    assert (await http.get(RT, headers=tenant.auth())).json()["total"] == 0

    crlf = roundtrip_body(tenant, **{f"{leg}__tlsOptions": {"ca": CA_PEM.replace("\n", "\r\n")}})
    r = await http.post(RT, json=crlf, headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert r.json()["roundtripConfig"][leg]["tlsOptions"]["ca"] == CA_PEM
