# ruff: noqa: E501  (the page's cURL command is kept verbatim, long lines included)
"""Seed 004's "cURL (bash)" example, run by bash and curl as written (only the base URL and the
token differ): the answer is the page's "Response body", `{"id": "<digits>"}` with 200."""

import asyncio
import json
import shutil

import asyncpg
import pytest

from tests.alertsite.helpers import stored
from tests.conftest import Tenant

# Seed 004, "cURL (bash)", verbatim.
CURL_BASH = """\
curl -X POST https://api.alertsite.com/api/v3/monitors/email-smtp \\
-H "Authorization: Bearer ACCESS_TOKEN" \\
-H "Content-type: application/json" \\
-d '{"billing_plancode":"UBM - A/A", "name":"Email Sample Monitor", "hostname":"smtp.mycompany.com", "interval":15, "enabled":true}'
"""

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


async def test_the_bash_curl_example_creates_the_monitor(
    api_url: str, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    token = tenant.tokens["member"]  # an access token is a bearer token of the native API
    command = CURL_BASH.replace("https://api.alertsite.com", api_url).replace("ACCESS_TOKEN", token)
    # -s: no progress meter; -w: the status after the body; --noproxy: loopback only.
    command = command.replace("curl -X", "curl -s --noproxy '*' -w '\\n%{http_code}' -X", 1)
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    body, status = out.decode().rsplit("\n", 1)
    assert status == "200", out
    answer = json.loads(body)
    assert set(answer) == {"id"} and answer["id"].isdigit(), answer
    row = await stored(pool, answer["id"])
    assert (row["type"], row["status"]) == ("smtp", "active")
    assert row["customer_name"] == "AlertSite import"
