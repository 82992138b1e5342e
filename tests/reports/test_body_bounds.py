"""What a stranger's request body costs the API (real uvicorn, TLS where reporters post): a body
past its limit, declared or streamed in chunks, or sent where nothing reads it, is answered and
its connection closed, so the server's side takes at most the limit plus what its socket buffers
(measured: the bytes its kernel acknowledged); a body that trickles is cut at API_BODY_SECONDS
(408); a head past MAX_HEAD_BYTES is refused (400); a head that trickles is cut at
API_HEAD_SECONDS; a body read to its end keeps the connection alive."""

import asyncio
import http.client
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import trustme
from prometheus_client import REGISTRY

from controller.reports.parse import MAX_PACKED
from controller.runtime.serve import MAX_HEAD_BYTES
from controller.settings import ControllerSettings
from controller.web.app import MAX_BODY_BYTES, create_app
from controller.web.tls_accept import TLS_SHUTDOWN_S
from testkit.serving import serve_app
from testkit.trust import trusting
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.reports.conftest import tls_files
from tests.reports.uploading import (
    MIB,
    blocks,
    buffer_slack,
    send_after_answer,
    trickle,
    upload,
)

pytestmark = pytest.mark.breadth

GZIP = {"Content-Type": "application/tlsrpt+gzip"}
TWO_GIB = 2048


@pytest.fixture
def ctx(report_ca: trustme.CA) -> ssl.SSLContext:
    return trusting(report_ca)


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


async def test_a_client_sending_after_its_answer_is_cut_at_the_tls_shutdown_deadline(
    https_url: str, ctx: ssl.SSLContext
) -> None:
    """After a whole request asking the server to close, and its answer, the client sends on
    (20 MiB a second): the server's TLS shutdown, which reads (and decrypts) what comes while it
    waits for the client's close_notify, ends within TLS_SHUTDOWN_S and cuts it."""
    got = await asyncio.to_thread(send_after_answer, https_url + "/health", ctx, 20, 10.0)
    print(f"sent on after the answer: cut after {got.cut_after} s, {got.sent / MIB:.0f} MiB")
    assert got.status == 200, got
    assert got.cut_after is not None and got.cut_after < TLS_SHUTDOWN_S + 2, got


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


HEAD_S = 1  # API_HEAD_SECONDS of `hasty_url`
EVERY_S = 0.2  # a byte of the trickled head every so often
MOST = 100  # bytes trickled at most: 20 s, twenty times the deadline


@pytest.fixture
async def hasty_url(
    settings: ControllerSettings, pool: asyncpg.Pool, report_ca: trustme.CA, tmp_path: Path
) -> AsyncIterator[str]:
    app = create_app(settings, pool)
    async with serve_app(app, head_seconds=HEAD_S, **tls_files(report_ca, tmp_path)) as url:
        yield url


@pytest.mark.parametrize("after", [0, 2], ids=["new_connection", "kept_alive"])
async def test_a_head_that_trickles_is_cut_at_its_deadline(
    hasty_url: str, ctx: ssl.SSLContext, after: int
) -> None:
    """API_HEAD_SECONDS=1: a head sent a byte every 0.2 s (slowloris) on a new connection, and
    after two requests on a kept-alive one, is answered 408 and closed after about 5 bytes, not
    held while the client keeps sending."""
    got = await asyncio.to_thread(trickle, hasty_url + "/health", ctx, EVERY_S, MOST, after=after)
    state = "closed" if got.closed else "still open"
    print(f"head trickled a byte every {EVERY_S} s: {state} after {got.sent} bytes ({got})")
    assert got.closed, got
    assert got.sent < MOST // 2, got
    assert got.status == 408, got


async def test_a_connection_that_sends_nothing_is_cut_at_the_head_deadline(
    hasty_url: str, ctx: ssl.SSLContext
) -> None:
    """Connected (TLS done) and silent: answered 408 and closed, not held until the server stops
    (the client waits at most 30 s)."""
    got = await asyncio.to_thread(trickle, hasty_url + "/health", ctx, 30, 1, after=0, silent=True)
    assert (got.closed, got.status, got.sent) == (True, 408, 0), got


async def test_a_kept_alive_client_is_not_cut_by_the_head_deadline(
    hasty_url: str, ctx: ssl.SSLContext
) -> None:
    """Five requests in a row on one connection, idle past API_HEAD_SECONDS between two of them
    (idle is the keep-alive timeout's to bound): each answered, on the same socket."""

    def requests() -> list[tuple[int, int]]:
        host, port = hasty_url.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
        done = []
        try:
            for i in range(5):
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                assert conn.sock is not None
                done.append((r.status, conn.sock.getsockname()[1]))
                if i == 2:
                    # idle, past the head deadline (the guard's own clock: no event to wait on)
                    time.sleep(HEAD_S * 1.5)
        finally:
            conn.close()
        return done

    done = await asyncio.to_thread(requests)
    assert [status for status, _ in done] == [200] * 5, done
    assert len({port for _, port in done}) == 1, done  # one connection: one client port
