# ruff: noqa: E501  (the seed example is kept verbatim, long lines included)
"""The seed's Python example (requests: log in, then create an SMTP monitor) runs unchanged
against the served app; only its base URL and credentials differ."""

import asyncio
import sys
from pathlib import Path

import asyncpg
import httpx

from tests.alertsite.helpers import native, stored
from tests.conftest import PASSWORD, Tenant

# Seed 004, verbatim but for the three lines marked below.
SEED_EXAMPLE = """\
import requests # Requests library https://requests.kennethreitz.org/en/master/
import json

baseUrl = {base_url!r}  # changed: the served app
username = {username!r}  # changed: a test user
password = {password!r}  # changed: its password

monitor_params = {{
  'billing_plancode': 'UBM - A/A',
  'name': 'Email Sample Monitor',
  'hostname': 'smtp.mycompany.com',
  'interval': 15,
  'enabled': True
}}

# Login
payload = {{'username': username, 'password': password}}
r = requests.post(baseUrl+'/access-tokens', data=json.dumps(payload), headers={{'Content-Type': 'application/json'}})
token = r.json()['access_token']

# Create the monitor
headers = {{
  'Authorization': 'Bearer ' + token,
  'Content-Type': 'application/json'
}}
r = requests.post(baseUrl+'/monitors/email-smtp', data=json.dumps(monitor_params), headers=headers)
result = r.json()
if r.status_code == requests.codes.ok:
  monitor_id = result['id']
  print('Successfully created the monitor. ID:{{}}'.format(monitor_id))
else:
  print('Could not create a monitor. The following error(s) occurred:', *result['errors'], sep='\\n')
"""


async def run_example(tmp_path: Path, base_url: str, username: str, password: str) -> str:
    """Run the example as a script of its own (it is synchronous); its stdout."""
    script = tmp_path / "alertsite_example.py"
    script.write_text(SEED_EXAMPLE.format(base_url=base_url, username=username, password=password))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_seed_example_creates_the_monitor(
    tmp_path: Path, api_url: str, http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    out = await run_example(tmp_path, f"{api_url}/api/v3", tenant.emails["member"], PASSWORD)
    prefix = "Successfully created the monitor. ID:"
    assert out.startswith(prefix), out
    monitor_id = out.removeprefix(prefix).strip()
    assert monitor_id.isdigit(), out

    # An ordinary SMTP monitor of the caller's organization, in its default customer.
    monitor = await native(http, pool, tenant, monitor_id)
    assert monitor["id"] == int(monitor_id)
    assert monitor["organizationId"] == tenant.org_id
    assert monitor["name"] == "Email Sample Monitor"
    assert monitor["hostname"] == "smtp.mycompany.com"
    assert monitor["checkInterval"] == 15 * 60
    assert monitor["status"] == "active"
    assert monitor["timeoutSeconds"] == 30
    assert monitor["port"] is None
    assert monitor["allowedCheckCountryCodes"] is None
    assert monitor["smtpConfig"] == {}
    row = await stored(pool, monitor_id)
    assert row["customer_name"] == "AlertSite import" and row["is_default"]


async def test_seed_example_reports_errors_in_alertsite_shape(
    tmp_path: Path, api_url: str, tenant: Tenant
) -> None:
    """A readonly user logs in but may not create: the example prints AlertSite's errors list."""
    out = await run_example(tmp_path, f"{api_url}/api/v3", tenant.emails["readonly"], PASSWORD)
    lines = out.splitlines()
    assert lines[0] == "Could not create a monitor. The following error(s) occurred:", out
    assert lines[1].startswith("{'code': 403, 'message': 'Forbidden"), out
