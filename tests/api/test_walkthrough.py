"""The README's walkthrough as written: every request of its code blocks is valid JSON that a
real controller accepts (201), the private-CA one built by `jq --rawfile` from a PEM file, and
the example monitors file (docs/examples/monitors.yaml) is one `apply --dry-run` accepts; the
requests `make run`'s banner prints are accepted too, and its example monitor is the run's
alert sink (up with no server of the user's own)."""

import asyncio
import json
import re
from pathlib import Path

import pytest
import trustme

from controller.ascode import spec
from testkit.serving import http_client
from tests.api.test_cli import ROOT
from tests.api.test_monitors_as_code import command_line
from tests.conftest import Tenant
from tools.devrun import sink_env, try_it

pytestmark = pytest.mark.breadth

README = (ROOT / "README.md").read_text()
EXAMPLE = ROOT / "docs" / "examples" / "monitors.yaml"
# The shell splices $SINK_SMTP_PORT into the alert sink's body: here its default stands for it.
BLOCKS = [
    b.replace("\\\n", " ").replace("'\"$SINK_SMTP_PORT\"'", "2525")
    for b in re.findall(r"```sh\n(.*?)```", README, re.S)
]
CURLS = [
    (path, body)
    for block in BLOCKS
    for path, body in re.findall(
        r"curl -s -X POST \"\$API(/api/[\w-]+)\" [^|]*?-d '(\{.*?\})'", block, re.S
    )
]
JQ = [
    m for block in BLOCKS for m in re.findall(r"jq -n --rawfile ca ca\.pem '(.*?)' \|", block, re.S)
]
BODY = r"curl -s -X POST http://127.0.0.1:8080(/api/[\w-]+) [^|]*?-d '(\{.*?\})'"
ALERT_SINK = next((b for _, b in CURLS if '"name": "Alert sink"' in b), None)


def for_tenant(body: str, tenant: Tenant) -> dict[str, object]:
    """A README body (valid JSON as written) for the test's customer instead of customer 1."""
    parsed: dict[str, object] = json.loads(body)
    if parsed.get("customerId") == 1:
        parsed["customerId"] = tenant.customer_public_id
    return parsed


def test_the_walkthrough_has_each_example() -> None:
    paths = [p for p, _ in CURLS]
    assert paths.count("/api/smtp-monitors") == 2 and paths.count("/api/imap-pop-monitors") == 2
    assert "/api/customers" in paths and "/api/roundtrip-monitors" in paths
    assert len(JQ) == 1 and ALERT_SINK is not None
    assert "Junk" not in dict(CURLS)["/api/roundtrip-monitors"]  # a folder every mailbox has


@pytest.mark.parametrize(("path", "body"), CURLS, ids=[f"{i}{p}" for i, (p, _) in enumerate(CURLS)])
async def test_each_request_of_the_walkthrough_is_accepted(
    api_url: str, tenant: Tenant, path: str, body: str
) -> None:
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as client:
        r = await client.post(path, json=for_tenant(body, tenant))
    assert r.status_code == 201, r.text


async def test_the_alert_sink_monitor_and_the_private_ca_built_by_jq_are_accepted(
    api_url: str, tenant: Tenant, tmp_path: Path
) -> None:
    assert ALERT_SINK is not None
    (tmp_path / "ca.pem").write_text(trustme.CA().cert_pem.bytes().decode())
    jq = await asyncio.create_subprocess_exec(
        "jq", "-n", "--rawfile", "ca", "ca.pem", JQ[0], cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(jq.communicate(), 10)
    assert jq.returncode == 0
    built = out.decode()
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as client:
        made = await client.post("/api/smtp-monitors", json=for_tenant(built, tenant))
        sink = await client.post("/api/smtp-monitors", json=for_tenant(ALERT_SINK, tenant))
    assert made.status_code == 201, made.text
    assert "-----BEGIN CERTIFICATE-----\n" in made.json()["smtpConfig"]["tlsOptions"]["ca"]
    assert sink.status_code == 201, sink.text
    assert (sink.json()["hostname"], sink.json()["port"]) == ("127.0.0.1", 2525)


# Four command starts, each allowed 30 s on a loaded host (command_line).
@pytest.mark.timeout(150)
async def test_the_example_monitors_file_applies_and_exports_with_its_one_variable(
    api_url: str, tenant: Tenant, tmp_path: Path
) -> None:
    """`apply --dry-run` accepts the README's example file as it is (but for its customer);
    applied, then exported, it comes back with the one variable it names."""
    text = EXAMPLE.read_text().replace("customer: 1 ", f"customer: {tenant.customer_public_id} ")
    assert tenant.customer_public_id in text
    path = tmp_path / "monitors.yaml"
    path.write_text(text)
    env = {
        "MAILPROBE_TOKEN": tenant.tokens["admin"],
        "MAILPROBE_API": api_url,
        "MAILPROBE_SECRET_PROBE_PASS": "probe-s3cret",
    }
    code, out, err = await command_line("apply", "-f", str(path), "--dry-run", env=env)
    assert code == 0, err
    assert out.splitlines()[-1].endswith(
        "5 to create, 0 to update, 0 to delete (dry run: nothing changed)"
    )
    code, out, err = await command_line("apply", "-f", str(path), env=env)
    assert code == 0, err + out
    code, exported, err = await command_line(
        "export", "--customer", tenant.customer_public_id, env=env
    )
    assert code == 0, err
    assert set(re.findall(r"env: (\w+)", exported)) == {"MAILPROBE_SECRET_PROBE_PASS"}
    assert "ca: |\n" in exported
    # the round trip as written: no default the API spells out (`ignoreTls: false`, …)
    for default in ("ignoreTls", "allowPlaintextAuth", "spamFolders", "null", "false"):
        assert default not in exported, exported
    path.write_text(exported)
    code, out, err = await command_line("apply", "-f", str(path), "--dry-run", env=env)
    assert code == 0, err
    assert out.splitlines()[-1].endswith(
        "0 to create, 0 to update, 0 to delete (dry run: nothing changed)"
    )


def test_tail_by_name_is_given_the_token_it_needs() -> None:
    """`tail --monitor NAME` asks the API which monitor that is: without MAILPROBE_TOKEN it
    exits 2, so every such command of the README sets it."""
    by_name = re.findall(r"`([^`]*tail --monitor [\"A-Za-z][^`]*)`", README)
    assert by_name
    assert all("MAILPROBE_TOKEN=" in command for command in by_name), by_name


@pytest.mark.parametrize("relay", [None, "smtp://relay.example.com:587"])
async def test_the_banner_requests_are_accepted(
    api_url: str, tenant: Tenant, relay: str | None
) -> None:
    env = {"NOTIFY_SMTP_URL": relay} if relay else {}
    sink = sink_env(env, 2526, 8026)
    banner = try_it("http://127.0.0.1:8080", "admin-token", sink, 2526).replace("\\\n", " ")
    bodies = re.findall(BODY, banner, re.S)
    assert [path for path, _ in bodies] == ["/api/customers", "/api/smtp-monitors"]
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as client:
        made = [await client.post(path, json=for_tenant(body, tenant)) for path, body in bodies]
    assert [r.status_code for r in made] == [201, 201], [r.text for r in made]
    monitor = made[1].json()
    where = (monitor["hostname"], monitor["port"])
    assert where == (("smtp.example.com", 587) if relay else ("127.0.0.1", 2526))


async def test_the_browser_is_told_there_is_no_icon(api_url: str) -> None:
    """Browsers ask every page's origin for /favicon.ico; a 404 shows in their consoles as a
    failed load on each console and status page."""
    async with http_client(base_url=api_url, timeout=10) as client:
        r = await client.get("/favicon.ico")
    assert r.status_code == 204


def test_the_example_file_without_its_variable_names_every_secret_to_set() -> None:
    """One run lists every unset variable, a round trip's both legs too, each at its line."""
    with pytest.raises(spec.SpecError) as caught:
        spec.load(EXAMPLE.read_text(), "monitors.yaml", {})
    missing = [p for p in caught.value.problems if "is not set" in p]
    assert len(missing) == 5, caught.value.problems
    assert all("MAILPROBE_SECRET_PROBE_PASS" in p for p in missing)
    lines = EXAMPLE.read_text().splitlines()
    assert [lines[int(p.split(":")[1]) - 1].split(":")[0].strip() for p in missing] == [
        "pass", "password", "password", "pass", "password"
    ]  # fmt: skip
