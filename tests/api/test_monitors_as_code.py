"""Monitors as code against the real API: `apply` creates, updates and (with prune) deletes a
customer's monitors to match a file, idempotently; secrets come from the environment; the API's
own messages come back at the file's line; `export` writes a file that applies as no change."""

import asyncio
import io
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg
import httpx
import pytest
import trustme

from controller.ascode import run as ascode
from controller.ascode import run_dir
from controller.ascode.run import apply, current, export_text
from controller.ascode.spec import Spec, SpecError, load
from controller.cli import parser
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from testkit.serving import http_client
from tests.api.helpers import IMAP, SMTP, stored_row
from tests.api.test_cli import ROOT, SETTINGS
from tests.conftest import Tenant, make_tenant
from tests.thread_output import captured

TOKEN = "mp_the-api-token"

PEM = trustme.CA().cert_pem.bytes().decode()

ENV = {"MAILPROBE_SECRET_RELAY": "relay-s3cret", "MAILPROBE_SECRET_BOX": "box-s3cret"}


def monitors_file(customer: str, relay_host: str = "smtp.example.com") -> str:
    return f"""\
customer: {customer}
monitors:
  - type: smtp
    name: Outbound relay
    hostname: {relay_host}
    port: 587
    checkInterval: 300
    smtpConfig:
      auth:
        user: probe
        pass: {{env: MAILPROBE_SECRET_RELAY}}
  - type: imap
    name: Mailbox
    hostname: imap.example.com
    imapPopConfig:
      user: probe@example.com
      password: {{env: MAILPROBE_SECRET_BOX}}
      tls: true
  - type: pop3
    name: POP box
    hostname: pop.example.com
    allowedCheckCountryCodes: [de, US]
    mailDomain: Example.com
"""


@pytest.fixture
async def client(api_url: str, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as c:
        yield c


class Snoop:
    """A listener on loopback that records the first bytes of every connection (a request's
    head, with its Authorization header) and answers 502: a stand-in for a proxy or a server
    that must never be contacted."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.heads.append(await reader.read(4096))
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def command_line(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """`python -m controller *args` with `env` on top of this process's environment (less the
    session's settings); its exit code, stdout and stderr."""
    full = {k: v for k, v in os.environ.items() if k not in SETTINGS} | env
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        *args,
        cwd=ROOT,
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def in_process(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """`python -m controller apply|export *args` run in this process, as `command_line` runs it
    but without an interpreter's start (~1.8 CPU-s): the same parser and
    `controller.ascode.run.main`, which `python -m controller` hands `os.environ`, here the
    same environment as a mapping. Its exit code, stdout and stderr. The proxy tests run the
    real command line, apply and export."""
    full = {k: v for k, v in os.environ.items() if k not in SETTINGS} | env
    full.setdefault(run_dir.RUN_DIR_ENV, str(ROOT / run_dir.DEFAULT_RUN_DIR))  # as its cwd=ROOT
    parsed = parser().parse_args(list(args))
    out, err = io.StringIO(), io.StringIO()

    def main() -> int:
        with captured(out, err):  # the API server in this process logs meanwhile
            try:
                return ascode.main(parsed, full)
            except SystemExit as exc:  # as the interpreter ends on it
                if isinstance(exc.code, int | None):
                    return exc.code or 0
                print(exc.code, file=sys.stderr)
                return 1

    code = await asyncio.to_thread(main)  # main runs its own event loop
    return code, out.getvalue(), err.getvalue()


async def run(spec: Spec, client: httpx.AsyncClient, **flags: bool) -> tuple[int, list[str]]:
    said: list[str] = []
    code = await apply(
        spec,
        client,
        prune=flags.get("prune", False),
        dry_run=flags.get("dry_run", False),
        say=said.append,
    )
    return code, said


async def test_apply_creates_then_changes_nothing_then_updates_and_prunes(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    customer = tenant.customer_public_id
    code, said = await run(load(monitors_file(customer), "m.yaml", ENV), client)
    assert code == 0, said
    assert said[:3] == [
        "+ create smtp 'Outbound relay'",
        "+ create imap 'Mailbox'",
        "+ create pop3 'POP box'",
    ]
    shown = {m.name: m for m in await current(client, customer)}
    assert shown["POP box"].type == "pop3"
    assert shown["POP box"].values["allowed_country_codes"] == ["DE", "US"]
    assert shown["POP box"].values["mail_domain"] == "example.com"
    row = await stored_row(pool, shown["Outbound relay"].public_id)
    assert SecretBox(settings.secrets.secrets_key or "").open(row["config"]["auth"]["pass"]) == (
        "relay-s3cret"
    )
    updated_at = {
        m["publicId"]: m["updatedAt"]
        for path in (SMTP, IMAP)
        for m in (await client.get(path)).json()["items"]
    }

    code, said = await run(load(monitors_file(customer), "m.yaml", ENV), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said
    for path in (SMTP, IMAP):
        for m in (await client.get(path)).json()["items"]:
            assert m["updatedAt"] == updated_at[m["publicId"]]  # no write at all

    moved = load(monitors_file(customer, "SMTP2.example.com"), "m.yaml", ENV)
    code, said = await run(moved, client, dry_run=True)
    assert said[0] == "~ update smtp 'Outbound relay' (hostname)"
    assert said[-1].endswith("(dry run: nothing changed)")
    assert (await client.get(f"{SMTP}/{shown['Outbound relay'].public_id}")).json()[
        "hostname"
    ] == "smtp.example.com"
    code, said = await run(moved, client)
    assert code == 0, said
    got = (await client.get(f"{SMTP}/{shown['Outbound relay'].public_id}")).json()
    assert got["hostname"] == "smtp2.example.com"

    only_relay = Spec(moved.file, moved.customer, moved.customer_line, moved.monitors[:1])
    code, said = await run(only_relay, client)
    assert "= keep imap 'Mailbox' (not in the file; --prune deletes it)" in said
    assert len(await current(client, customer)) == 3
    code, said = await run(only_relay, client, prune=True)
    assert code == 0 and "- delete imap 'Mailbox'" in said, said
    assert [m.name for m in await current(client, customer)] == ["Outbound relay"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("hostname: imap.example.com", "hostname: imap example"), "m.yaml:14: Invalid hostname"),
        (("    port: 587", "    port: 70000"), "m.yaml:6: port must be between 1 and 65535"),
        (
            ("        pass: {env: MAILPROBE_SECRET_RELAY}", "        pass: hunter2"),
            "m.yaml:11: smtpConfig.auth.pass: secrets are not kept in the file",
        ),
        (
            ("{env: MAILPROBE_SECRET_BOX}", "{env: MAILPROBE_SECRET_NOT_SET}"),
            "m.yaml:17: imapPopConfig.password: environment variable MAILPROBE_SECRET_NOT_SET"
            " is not set",
        ),
        (
            ("{env: MAILPROBE_SECRET_RELAY}", "{env: MAILPROBE_TOKEN}"),
            "m.yaml:11: smtpConfig.auth.pass: MAILPROBE_TOKEN holds the API token and is never"
            " sent as a secret",
        ),
        (
            ("{env: MAILPROBE_SECRET_BOX}", "{env: HOME}"),
            "m.yaml:17: imapPopConfig.password: environment variable HOME may not be read as a"
            " secret: secrets come only from variables named MAILPROBE_SECRET_<NAME>",
        ),
        (
            ("{env: MAILPROBE_SECRET_BOX}", "{env: MAILPROBE_SECRET_}"),
            "m.yaml:17: imapPopConfig.password: environment variable MAILPROBE_SECRET_ may not",
        ),
        (
            ("{env: MAILPROBE_SECRET_BOX}", "{env: MAILPROBE_SECRET_TOKEN_COPY}"),
            "m.yaml:17: imapPopConfig.password: MAILPROBE_SECRET_TOKEN_COPY holds the API token"
            " (MAILPROBE_TOKEN), which is never sent as a secret",
        ),
        (("      tls: true", "      tls: yes-please"), "m.yaml:18: Invalid request body"),
        (("    checkInterval: 300", "    checkInterval: 5"), "m.yaml:7: checkInterval must be"),
        (("    name: POP box", "    name: Mailbox"), "m.yaml:20: name: 'Mailbox' is also"),
        (("  - type: pop3", "  - type: nntp"), "m.yaml:19: type: one of smtp, imap, pop3"),
        (
            ("      tls: true", "      tlsOptions: {ca: nope}"),
            "m.yaml:18: imapPopConfig.tlsOptions.ca",
        ),
    ],
)
async def test_a_bad_file_is_refused_at_its_line_with_the_apis_message(
    tenant: Tenant, change: tuple[str, str], expected: str
) -> None:
    """Also pins that a secret is read only from a MAILPROBE_SECRET_ variable, never from the API
    token's variable nor with the token's value (the file would send it to its own server)."""
    text = monitors_file(tenant.customer_public_id)
    assert change[0] in text
    env = {**ENV, "HOME": "/root", "MAILPROBE_SECRET_": "x"}
    env |= {"MAILPROBE_TOKEN": TOKEN, "MAILPROBE_SECRET_TOKEN_COPY": TOKEN}
    with pytest.raises(SpecError) as refused:
        load(text.replace(change[0], change[1], 1), "m.yaml", env)
    assert any(p.startswith(expected) for p in refused.value.problems), refused.value.problems
    assert "hunter2" not in str(refused.value) and TOKEN not in str(refused.value)


async def test_what_only_the_server_knows_comes_back_at_the_line(
    client: httpx.AsyncClient, api_url: str, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Another organization's customer is not found; a readonly token may not write: both are
    the API's answers, reported at the file, and nothing is created."""
    other = await make_tenant(pool)
    code, said = await run(load(monitors_file(other.customer_public_id), "m.yaml", ENV), client)
    assert code == 1 and said == [
        f"m.yaml: customer {other.customer_public_id}: Customer not found"
    ]

    spec = load(monitors_file(tenant.customer_public_id), "m.yaml", ENV)
    headers = tenant.auth("readonly")
    async with http_client(base_url=api_url, headers=headers, timeout=10) as readonly:
        code, said = await run(spec, readonly)
    assert code == 1
    assert "m.yaml:3: the API refused it (HTTP 403)" in said[1], said
    assert await current(client, tenant.customer_public_id) == []


async def test_export_applies_as_no_change(client: httpx.AsyncClient, tenant: Tenant) -> None:
    customer = tenant.customer_public_id
    assert (await run(load(monitors_file(customer), "m.yaml", ENV), client))[0] == 0
    text = export_text(customer, await current(client, customer))
    assert "relay-s3cret" not in text and "********" not in text
    assert "pass:\n        env: MAILPROBE_SECRET_RELAY\n" in text  # the file's own names
    assert "password:\n      env: MAILPROBE_SECRET_BOX\n" in text
    code, said = await run(load(text, "exported.yaml", ENV), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said


SHARED_FILE = """\
customer: {customer}
monitors:
  - type: smtp
    name: Submission
    hostname: smtp.example.com
    port: 587
    smtpConfig:
      auth: {{user: probe, pass: {{env: MAILPROBE_SECRET_PROBE_PASS}}}}
      tlsOptions:
        ca: |
{ca}
  - type: imap
    name: IMAPS
    hostname: imap.example.com
    imapPopConfig: {{user: probe, password: {{env: MAILPROBE_SECRET_PROBE_PASS}}, tls: true}}
  - type: pop3
    name: POP3S
    hostname: pop.example.com
    imapPopConfig: {{user: probe, password: {{env: MAILPROBE_SECRET_PROBE_PASS}}, tls: true}}
  - type: roundtrip
    name: Mail arrives
    roundtripConfig:
      to: probe@example.com
      send:
        hostname: smtp.example.com
        port: 587
        from: probe@example.com
        auth: {{user: probe, pass: {{env: MAILPROBE_SECRET_PROBE_PASS}}}}
      receive:
        hostname: imap.example.com
        user: probe
        password: {{env: MAILPROBE_SECRET_PROBE_PASS}}
        tls: true
        folders: [INBOX]
"""


async def test_one_variable_for_many_secrets_exports_as_that_one_variable(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Five secrets read from one MAILPROBE_SECRET_PROBE_PASS come back as that one name (the
    API keeps each secret's variable as `secretEnv`), so the exported file applies as no
    change with only that variable set; a PEM comes back as a block scalar, line for line."""
    customer = tenant.customer_public_id
    ca = "".join(f"          {line}\n" for line in PEM.splitlines())
    text = SHARED_FILE.format(customer=customer, ca=ca.rstrip("\n"))
    env = {"MAILPROBE_SECRET_PROBE_PASS": "probe-s3cret"}
    code, said = await run(load(text, "m.yaml", env), client)
    assert code == 0, said
    shown = (await client.get("/api/roundtrip-monitors")).json()["items"][0]
    assert shown["secretEnv"] == {
        "send.auth.pass": "MAILPROBE_SECRET_PROBE_PASS",
        "receive.password": "MAILPROBE_SECRET_PROBE_PASS",
    }
    exported = export_text(customer, await current(client, customer))
    assert set(re.findall(r"env: (\w+)", exported)) == {"MAILPROBE_SECRET_PROBE_PASS"}
    assert exported.count("env: MAILPROBE_SECRET_PROBE_PASS") == 5
    block = "".join(f"        {line}\n" for line in PEM.splitlines())
    assert f"      ca: |\n{block}" in exported, exported
    assert "\n\n" not in exported
    code, said = await run(load(exported, "exported.yaml", env), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said
    assert export_text(customer, await current(client, customer)) == exported


async def test_export_makes_up_stable_names_for_secrets_set_elsewhere(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A secret set through the API or the console has no variable: export names it after the
    monitor and what the secret is, numbering names two monitors would share, the same on every
    export; applying that file records them, and changes nothing else."""
    customer = tenant.customer_public_id
    for name in ("Relay A", "relay-a"):
        body: dict[str, Any] = {
            "customerId": customer,
            "name": name,
            "hostname": "smtp.example.com",
            "smtpConfig": {"auth": {"user": "probe", "pass": "p"}},
        }
        assert (await client.post("/api/smtp-monitors", json=body)).status_code == 201
    body = {
        "customerId": customer,
        "name": "Loop",
        "roundtripConfig": {
            "to": "probe@example.com",
            "send": {
                "hostname": "smtp.example.com",
                "from": "probe@example.com",
                "auth": {"user": "probe", "pass": "p"},
            },
            "receive": {"hostname": "imap.example.com", "user": "probe", "password": "p"},
        },
    }
    assert (await client.post("/api/roundtrip-monitors", json=body)).status_code == 201
    first = export_text(customer, await current(client, customer))
    names = re.findall(r"env: (\w+)", first)
    assert sorted(names) == [
        "MAILPROBE_SECRET_LOOP_RECEIVE_PASSWORD",
        "MAILPROBE_SECRET_LOOP_SEND_PASSWORD",
        "MAILPROBE_SECRET_RELAY_A_PASSWORD",
        "MAILPROBE_SECRET_RELAY_A_PASSWORD_2",
    ]
    assert export_text(customer, await current(client, customer)) == first
    env = {n: "p" for n in names}
    code, said = await run(load(first, "exported.yaml", env), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said
    assert export_text(customer, await current(client, customer)) == first


@pytest.mark.parametrize(
    ("secret_env", "said"),
    [
        ({"auth.password": "MAILPROBE_SECRET_X"}, "unknown field `auth.password`"),
        ({"password": "MAILPROBE_SECRET_X"}, "unknown field `password`"),  # IMAP's, not SMTP's
        ({"auth.pass": "HOME"}, "secretEnv.auth.pass: Expected `str` matching regex"),
        ({"auth.pass": "MAILPROBE_SECRET_" + "A" * 101}, "secretEnv.auth.pass: Expected"),
        ({"auth.pass": 3}, "secretEnv.auth.pass: Expected `str`"),
        (["MAILPROBE_SECRET_X"], "secretEnv: Expected `object"),
    ],
)
async def test_a_bad_secret_env_is_a_400_naming_it(
    client: httpx.AsyncClient, tenant: Tenant, secret_env: object, said: str
) -> None:
    body = {
        "customerId": tenant.customer_public_id,
        "name": "x",
        "hostname": "smtp.example.com",
        "secretEnv": secret_env,
    }
    r = await client.post("/api/smtp-monitors", json=body)
    assert r.status_code == 400, r.text
    assert said in r.json()["message"] and r.json()["fields"][0].startswith("secretEnv")


async def test_the_command_line_applies_with_a_token_from_the_environment(
    api_url: str, tenant: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "monitors.yaml"
    path.write_text(monitors_file(tenant.customer_public_id))
    env = {**ENV, "MAILPROBE_TOKEN": tenant.tokens["admin"], "MAILPROBE_API": api_url}
    code, out, err = await in_process("apply", "-f", str(path), "--dry-run", env=env)
    assert code == 0, err
    assert out.splitlines()[-1].endswith(
        "3 to create, 0 to update, 0 to delete (dry run: nothing changed)"
    )


@pytest.mark.parametrize("command", ["apply", "export"])
async def test_the_command_line_ignores_proxy_variables(
    api_url: str, tenant: Tenant, tmp_path: Path, command: str
) -> None:
    """HTTP_PROXY (and its kin) would carry the bearer token through a plain-http proxy the
    loopback rule never saw: the proxy is never contacted and the command talks to --api."""
    path = tmp_path / "monitors.yaml"
    path.write_text(monitors_file(tenant.customer_public_id))
    what = {
        "apply": ["-f", str(path), "--dry-run"],
        "export": ["--customer", tenant.customer_public_id],
    }
    async with Snoop() as proxy:
        env = {**ENV, "MAILPROBE_TOKEN": tenant.tokens["admin"], "MAILPROBE_API": api_url}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env |= {name: proxy.url, name.lower(): proxy.url}
        env |= {"NO_PROXY": "", "no_proxy": ""}
        code, out, err = await command_line(command, *what[command], env=env)
    assert proxy.heads == []
    assert code == 0, (out, err)


async def test_the_api_token_as_a_secret_is_refused_before_any_request(
    tenant: Tenant, tmp_path: Path
) -> None:
    """`{env: MAILPROBE_TOKEN}` would send the token as a password to the file's server: exit 1
    naming the file's line and the variable, and the API (here a listener recording any
    contact) is never asked anything."""
    path = tmp_path / "monitors.yaml"
    text = monitors_file(tenant.customer_public_id)
    path.write_text(text.replace("{env: MAILPROBE_SECRET_RELAY}", "{env: MAILPROBE_TOKEN}"))
    async with Snoop() as api:
        env = {**ENV, "MAILPROBE_TOKEN": tenant.tokens["admin"], "MAILPROBE_API": api.url}
        code, out, err = await in_process("apply", "-f", str(path), env=env)
    assert api.heads == []
    assert code == 1 and out == "", err
    assert err.startswith(f"{path}:11: smtpConfig.auth.pass: MAILPROBE_TOKEN holds the API token")
    assert tenant.tokens["admin"] not in err


@pytest.mark.parametrize("command", ["apply", "export"])
async def test_the_command_line_refuses_plain_http_to_another_host_before_connecting(
    tenant: Tenant, tmp_path: Path, command: str
) -> None:
    """The token would cross the network unencrypted: exit 2 naming the host and the ways out,
    before any connection. The name is under `.invalid`, which never resolves: had the command
    tried to connect, it would have failed on the name instead (and no traffic leaves here)."""
    path = tmp_path / "monitors.yaml"
    path.write_text(monitors_file(tenant.customer_public_id))
    what = {"apply": ["-f", str(path)], "export": ["--customer", tenant.customer_public_id]}
    env = {**ENV, "MAILPROBE_TOKEN": tenant.tokens["admin"]}
    api = ["--api", "http://mailprobe-api.invalid:8080"]
    code, out, said = await in_process(command, *what[command], *api, env=env)
    assert code == 2, (out, said)
    assert said.startswith("error: --api http://mailprobe-api.invalid:8080 would send the API")
    assert "https://" in said and "--insecure-http" in said
    assert out == ""


async def test_a_rotated_secret_reaches_the_server_on_the_next_apply(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """The API shows secrets only as the mask, so no plan sees a rotated secret: every
    apply sends the file's secrets and the API stores the ones that changed (the others keep
    their ciphertext)."""
    customer = tenant.customer_public_id
    assert (await run(load(monitors_file(customer), "m.yaml", ENV), client))[0] == 0
    shown = {m.name: m.public_id for m in await current(client, customer)}
    box_before = (await stored_row(pool, shown["Mailbox"]))["config"]["password"]

    rotated = {**ENV, "MAILPROBE_SECRET_RELAY": "relay-rotated-2"}
    code, said = await run(load(monitors_file(customer), "m.yaml", rotated), client)
    assert code == 0, said
    assert said[0] == (
        "= keep smtp 'Outbound relay' (its secret is sent; the API stores it only if it changed)"
    )
    assert said[2] == "= keep pop3 'POP box'"  # no secret in the file: nothing sent
    box = SecretBox(settings.secrets.secrets_key or "")
    relay = await stored_row(pool, shown["Outbound relay"])
    assert box.open(relay["config"]["auth"]["pass"]) == "relay-rotated-2"
    assert (await stored_row(pool, shown["Mailbox"]))["config"]["password"] == box_before


OAUTH2_FILE = """\
customer: {customer}
monitors:
  - type: imap
    name: M365 box
    hostname: outlook.office365.com
    imapPopConfig:
      user: probe@contoso.com
      tls: true
      oauth2:
        grant: client_credentials
        provider: microsoft
        tenant: contoso.onmicrosoft.com
        clientId: app
        clientSecret: {secret}
"""


async def test_an_oauth2_grants_secret_comes_from_the_environment_and_exports_as_one(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    customer = tenant.customer_public_id
    literal = OAUTH2_FILE.format(customer=customer, secret="grant-s3cret")
    with pytest.raises(SpecError) as refused:
        load(literal, "m.yaml", ENV)
    assert "grant-s3cret" not in str(refused.value)
    assert any("oauth2.clientSecret" in p for p in refused.value.problems), refused.value
    text = OAUTH2_FILE.format(customer=customer, secret="{env: MAILPROBE_SECRET_GRANT}")
    env = {**ENV, "MAILPROBE_SECRET_GRANT": "grant-s3cret"}
    assert (await run(load(text, "m.yaml", env), client))[0] == 0
    exported = export_text(customer, await current(client, customer))
    assert "grant-s3cret" not in exported and "********" not in exported
    assert "clientSecret:\n        env: MAILPROBE_SECRET_GRANT\n" in exported
    code, said = await run(load(exported, "exported.yaml", env), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said


async def test_apply_moves_a_monitor_only_with_its_password(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """`apply` sends a monitor's password with every change, so moving the relay to another
    host carries the file's password; the mask (all a reader of the API has) is refused before
    any request, and the API refuses it anyway (tests/api/test_secret_binding.py)."""
    customer = tenant.customer_public_id
    assert (await run(load(monitors_file(customer), "m.yaml", ENV), client))[0] == 0
    shown = {m.name: m.public_id for m in await current(client, customer)}
    masked = {**ENV, "MAILPROBE_SECRET_RELAY": "********"}
    with pytest.raises(SpecError, match="stands for a stored secret"):
        load(monitors_file(customer, "relay.attacker.example"), "m.yaml", masked)
    code, said = await run(
        load(monitors_file(customer, "smtp2.example.com"), "m.yaml", ENV), client
    )
    assert code == 0, said
    relay = await stored_row(pool, shown["Outbound relay"])
    assert relay["hostname"] == "smtp2.example.com"
    assert SecretBox(settings.secrets.secrets_key or "").open(relay["config"]["auth"]["pass"]) == (
        "relay-s3cret"
    )


REPUTATION_FILE = """\
customer: {customer}
monitors:
  - type: smtp
    name: Outbound
    hostname: smtp.example.com
    reputation:
      ips: [81.2.69.160, "2a00:1450:4001:0829::200e"]
      domains: [Mail.Example]
"""


async def test_listed_outbound_names_round_trip_through_apply_and_export(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """`reputation` is applied as the API normalises it, exported, and the export applies as
    no change; a file that drops it clears it."""
    customer = tenant.customer_public_id
    text = REPUTATION_FILE.format(customer=customer)
    assert (await run(load(text, "m.yaml", {}), client))[0] == 0
    exported = export_text(customer, await current(client, customer))
    assert "reputation:" in exported and "2a00:1450:4001:829::200e" in exported
    assert "mail.example" in exported
    code, said = await run(load(exported, "exported.yaml", {}), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said
    without = "\n".join(text.splitlines()[:5]) + "\n"
    code, said = await run(load(without, "m.yaml", {}), client)
    assert code == 0 and said[0].startswith("~") and "reputation" in said[0], said
    got = (await client.get(SMTP)).json()["items"]
    assert [m.get("reputation") for m in got] == [None]


SELECTORS_FILE = """\
customer: {customer}
monitors:
  - type: imap
    name: Mailbox
    hostname: imap.example.com
    mailDomain: example.com
    dkimSelectors: [Mail2026, s1]
"""


async def test_listed_dkim_selectors_round_trip_through_apply_and_export(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """`dkimSelectors` is applied as the API normalises it, exported, and the export applies
    as no change; a file that drops it clears it."""
    customer = tenant.customer_public_id
    text = SELECTORS_FILE.format(customer=customer)
    assert (await run(load(text, "m.yaml", {}), client))[0] == 0
    exported = export_text(customer, await current(client, customer))
    assert "dkimSelectors:" in exported and "mail2026" in exported
    code, said = await run(load(exported, "exported.yaml", {}), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said
    without = "\n".join(text.splitlines()[:-1]) + "\n"
    code, said = await run(load(without, "m.yaml", {}), client)
    assert code == 0 and said[0].startswith("~") and "dkimSelectors" in said[0], said
    got = (await client.get(IMAP)).json()["items"]
    assert [m.get("dkimSelectors") for m in got] == [None]


GRAPH_FILE = """\
customer: {customer}
monitors:
  - type: roundtrip
    name: Mail over Graph
    roundtripConfig:
      to: probe@contoso.com
      send:
        api: graph
        hostname: graph.microsoft.com
        from: sender@contoso.com
        auth:
          user: sender@contoso.com
          oauth2: {{provider: microsoft, tenant: contoso.com, grant: client_credentials,
            clientId: app, clientSecret: {{env: MAILPROBE_SECRET_GRAPH}}}}
      receive:
        api: graph
        hostname: graph.microsoft.com
        user: probe@contoso.com
        folders: [inbox]
        cleanup: delete
        oauth2: {{provider: microsoft, tenant: contoso.com, grant: client_credentials,
          clientId: app, clientSecret: {{env: MAILPROBE_SECRET_GRAPH}}}}
"""


async def test_a_graph_round_trip_applies_exports_and_applies_as_no_change(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A round trip's Graph legs (`api`, `cleanup`) go through apply and come back in export."""
    customer = tenant.customer_public_id
    env = {**ENV, "MAILPROBE_SECRET_GRAPH": "graph-s3cret"}
    code, said = await run(load(GRAPH_FILE.format(customer=customer), "m.yaml", env), client)
    assert code == 0, said
    shown = (await client.get("/api/roundtrip-monitors")).json()["items"][0]["roundtripConfig"]
    assert (shown["send"]["api"], shown["receive"]["api"], shown["receive"]["cleanup"]) == (
        "graph",
        "graph",
        "delete",
    )
    exported = export_text(customer, await current(client, customer))
    assert "api: graph" in exported and "cleanup: delete" in exported
    assert "graph-s3cret" not in exported
    code, said = await run(load(exported, "exported.yaml", env), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said


GRAPH_CHECK_FILE = """\
customer: {customer}
monitors:
  - type: imap
    name: Inbox over Graph
    imapPopConfig:
      api: graph
      user: probe@contoso.com
      oauth2: {{provider: microsoft, tenant: contoso.com, grant: client_credentials,
        clientId: app, clientSecret: {{env: MAILPROBE_SECRET_GRAPH}}}}
"""


async def test_a_mailbox_check_over_graph_applies_exports_and_applies_as_no_change(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """An IMAP/POP monitor's `api` (no host: Graph's) goes through apply and back in export."""
    customer = tenant.customer_public_id
    env = {**ENV, "MAILPROBE_SECRET_GRAPH": "graph-s3cret"}
    code, said = await run(load(GRAPH_CHECK_FILE.format(customer=customer), "m.yaml", env), client)
    assert code == 0, said
    [shown] = (await client.get(IMAP)).json()["items"]
    assert (shown["hostname"], shown["imapPopConfig"]["api"]) == ("graph.microsoft.com", "graph")
    exported = export_text(customer, await current(client, customer))
    assert "api: graph" in exported and "graph-s3cret" not in exported
    code, said = await run(load(exported, "exported.yaml", env), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said
