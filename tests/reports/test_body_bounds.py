"""What a stranger's request body costs the API (real uvicorn, TLS where reporters post): a body
past its limit, declared or streamed in chunks, or sent where nothing reads it, is answered and
its connection closed, so the server's side takes at most the limit plus what its socket buffers
(measured: the bytes its kernel acknowledged); a body that trickles is cut at API_BODY_SECONDS
(408); a head past MAX_HEAD_BYTES is refused (400); a body read to its end keeps the
connection alive."""

import asyncio
import ssl
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import trustme
from prometheus_client import REGISTRY

from controller.reports.parse import MAX_PACKED
from controller.runtime.serve import MAX_HEAD_BYTES
from controller.settings import ControllerSettings
from controller.web.app import MAX_BODY_BYTES, create_app
from testkit.serving import serve_app
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.reports.uploading import MIB, blocks, buffer_slack, upload

GZIP = {"Content-Type": "application/tlsrpt+gzip"}
TWO_GIB = 2048


@pytest.fixture
def ctx(report_ca: trustme.CA) -> ssl.SSLContext:
    made = ssl.create_default_context()
    report_ca.configure_trust(made)
    return made


async def _report_path(https: httpx.AsyncClient, tenant: Tenant, domain: str) -> str:
    await create(
        https,
        tenant,
        hostname=f"mx1.{domain}",
        port=25,
        mailDomain=domain,
        notificationEmail=f"ops@{domain}",
    )
    r = await https.get("/api/report-domains", headers=tenant.auth("readonly"))
    (shown,) = [d for d in r.json() if d["domain"] == domain]
    url: str = shown["tlsRptHttps"]
    return url.removeprefix("http://localhost:8080")


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_a_2_gib_report_is_cut_at_the_limit_and_its_connection_closed(
    https: httpx.AsyncClient,
    https_url: str,
    ctx: ssl.SSLContext,
    tenant: Tenant,
    domain: str,
    chunked: bool,
) -> None:
    path = await _report_path(https, tenant, domain)
    headers = GZIP if chunked else {**GZIP, "Content-Length": str(TWO_GIB * MIB)}
    up = await asyncio.to_thread(
        upload, https_url + path, ctx, headers, blocks(TWO_GIB), chunked=chunked
    )
    print(f"report, 2 GiB {'chunked' if chunked else 'declared'}: {up.acked / MIB:.1f} MiB taken")
    assert up.acked <= MAX_PACKED + buffer_slack(), up
    assert (up.status, up.headers.get("connection")) == (413, "close")


@pytest.mark.parametrize(
    "where",
    ["wrong_token", "unknown_path", "login"],
)
async def test_a_2_gib_chunked_body_nobody_reads_or_past_64_kib_costs_the_server_no_more(
    https: httpx.AsyncClient,
    https_url: str,
    ctx: ssl.SSLContext,
    tenant: Tenant,
    domain: str,
    where: str,
) -> None:
    """Anonymous paths: a report with a wrong token (404 before the body is read), a path no
    route takes (404), the login (a 64 KiB body limit)."""
    path, status = {
        "wrong_token": ((await _report_path(https, tenant, domain))[:-4] + "abcd", 404),
        "unknown_path": ("/no/such/path", 404),
        "login": ("/api/auth/login", 413),
    }[where]
    headers = {**GZIP, "Content-Type": "application/json"} if where == "login" else GZIP
    up = await asyncio.to_thread(
        upload, https_url + path, ctx, headers, blocks(TWO_GIB), chunked=True
    )
    print(f"{where}, 2 GiB chunked: {up.acked / MIB:.1f} MiB taken")
    assert up.acked <= MAX_BODY_BYTES + buffer_slack(), up
    assert (up.status, up.headers.get("connection")) == (status, "close")


async def test_a_head_that_never_ends_is_refused_past_32_kib(
    https_url: str, ctx: ssl.SSLContext
) -> None:
    """A header line of 2 GiB: 400 and the connection closed once the head passes
    MAX_HEAD_BYTES (h11's bound; uvicorn's httptools kept it all in memory)."""
    up = await asyncio.to_thread(
        upload, https_url + "/health", ctx, {}, blocks(TWO_GIB, b"a"), unended="X-Padding"
    )
    print(f"2 GiB header: {up.acked / MIB:.1f} MiB taken")
    assert up.acked <= MAX_HEAD_BYTES + buffer_slack(), up
    assert (up.status, up.headers.get("connection", "").lower()) == (400, "close")


@pytest.fixture
async def impatient_url(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with serve_app(create_app(settings.replace(api_body_seconds=1), pool)) as url:
        yield url


async def test_a_body_that_trickles_is_cut_at_its_deadline_with_408(
    https: httpx.AsyncClient, impatient_url: str, tenant: Tenant, domain: str
) -> None:
    """API_BODY_SECONDS=1: one byte of a declared 100, then nothing; the login and a report
    alike (the report counted as refused, `too_slow`)."""
    labels = {"kind": "unknown", "via": "https", "outcome": "too_slow"}
    was = REGISTRY.get_sample_value("mailprobe_reports_total", labels) or 0.0
    report = await _report_path(https, tenant, domain)
    for path, kind in (("/api/auth/login", "application/json"), (report, GZIP["Content-Type"])):
        headers = {"Content-Type": kind, "Content-Length": "100"}
        up = await asyncio.to_thread(upload, impatient_url + path, None, headers, [b"{"])
        assert (up.status, up.headers.get("connection")) == (408, "close"), path
    assert REGISTRY.get_sample_value("mailprobe_reports_total", labels) == was + 1


async def test_a_body_read_to_its_end_keeps_the_connection(https: httpx.AsyncClient) -> None:
    r = await https.post("/api/auth/login", json={"email": "nobody@example.com", "password": "x"})
    assert r.status_code == 401, r.text
    assert "connection" not in r.headers
