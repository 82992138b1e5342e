"""Per-monitor Prometheus series for one organization: `GET /metrics/monitors` with a scrape
token (`Authorization: Bearer mps_...`), which owners and admins make in the console.

The series and their labels are `scrape_series`'s. A large organization splits its scrape into
shards, one Prometheus target each: `?shards=N&shard=K` (0 ≤ K < N ≤ MAX_SHARDS) answers the
monitors whose internal id is K modulo N, so every monitor is in exactly one shard and stays in
it; without them the answer is every monitor. The phases of the latest checks (up to eight
samples per monitor and country, a third of the answer) come only with `?phases=true`. Rows are
read in one read-only snapshot, then written out in chunks, the event loop free between them,
gzip-compressed when the client accepts it (Prometheus does).
"""

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated
from uuid import UUID

import asyncpg
import structlog
from isal import isal_zlib
from litestar import MediaType, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Stream, Template

from controller.access.credentials import token_digest
from controller.reports import mailbox_store as mailboxes
from controller.reports import store as reports
from controller.web.api import guards
from controller.web.console import report_series, scrape_series
from controller.web.console import scrape_store as scrape
from controller.web.console.pages import page
from controller.web.console.session import PREFIX, principal_of
from controller.web.request_types import AnyRequest
from controller.web.services import ClockDep, PoolDep

log = structlog.get_logger(__name__)

PathStr = Annotated[str, PathParameter()]
TOKEN_PREFIX = "mps_"
MAX_SHARDS = 1000
_FLAGS = {"true": True, "1": True, "false": False, "0": False}
# Prometheus' own scrapes ask for gzip: ISA-L's level 1 shrinks the text about ninefold at a
# fifth of the cost of writing it (zlib's level 1 would cost more than the writing).
GZIP_LEVEL = 1


def _bearer(request: AnyRequest) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _text(status: int, text: str, **headers: str) -> Response[bytes]:
    return Response(
        text.encode() + b"\n", status_code=status, media_type=MediaType.TEXT, headers=headers
    )


def _shard(request: AnyRequest) -> tuple[int, int] | str:
    """`(shard, shards)` from the query, or what is wrong with it."""
    shard, shards = request.query_params.get("shard"), request.query_params.get("shards")
    if shard is None and shards is None:
        return 0, 1
    if shard is None or shards is None:
        return "shard and shards go together: ?shards=N&shard=K"
    values = {}
    for name, text in (("shard", shard), ("shards", shards)):
        if not (text.isascii() and text.isdigit() and len(text) <= 4):
            return f"{name} must be a whole number"
        values[name] = int(text)
    if not 1 <= values["shards"] <= MAX_SHARDS:
        return f"shards must be between 1 and {MAX_SHARDS}"
    if values["shard"] >= values["shards"]:
        return "shard must be less than shards (from 0)"
    return values["shard"], values["shards"]


def _phases(request: AnyRequest) -> bool | str:
    """Whether the phases were asked for, or what is wrong with the parameter."""
    text = request.query_params.get("phases", "false")
    flag = _FLAGS.get(text.lower()) if len(text) <= 5 else None
    return "phases must be true or false" if flag is None else flag


def _accepts_gzip(request: AnyRequest) -> bool:
    """Whether Accept-Encoding names gzip with a weight above 0 (a `*` alone is not asking)."""
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            name, _, weight = params.strip().partition("=")
            if name.strip().lower() != "q":
                return True
            try:
                return float(weight) > 0
            except ValueError:
                return False
    return False


async def _gzipped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    packer = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
    async for chunk in chunks:
        if packed := packer.compress(chunk):
            yield packed
    yield packer.flush()


@get("/metrics/monitors", include_in_schema=False)
async def monitor_metrics(request: AnyRequest, pool: PoolDep) -> Response[bytes] | Stream:
    token = _bearer(request)
    async with pool.acquire() as conn:
        org = None if token is None else await scrape.organization_for(conn, token_digest(token))
        if org is None:
            return _text(
                401,
                "Unauthorized: send a scrape token as `Authorization: Bearer <token>`",
                **{"WWW-Authenticate": "Bearer"},
            )
        shard, phases = _shard(request), _phases(request)
        if isinstance(shard, str) or isinstance(phases, str):
            return _text(400, f"Bad request: {shard if isinstance(shard, str) else phases}")
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            monitors = await scrape.monitors(conn, org, *shard)
            latest = await scrape.latest(conn, org, *shard, phases=phases)
    log.debug("monitor series", organization=org, shard=shard, monitors=len(monitors))

    async def body() -> AsyncIterator[bytes]:
        for chunk in scrape_series.encode(monitors, latest, phases=phases):
            yield chunk
            await asyncio.sleep(0)

    if not _accepts_gzip(request):
        return Stream(body(), media_type=scrape_series.CONTENT_TYPE)
    return Stream(
        _gzipped(body()),
        media_type=scrape_series.CONTENT_TYPE,
        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
    )


@get("/metrics/reports", include_in_schema=False)
async def report_metrics(request: AnyRequest, pool: PoolDep, clock: ClockDep) -> Response[bytes]:
    """The organization's report series (`report_series`), behind the same scrape token: one
    small answer (the domains its monitors name), so never sharded."""
    token = _bearer(request)
    async with pool.acquire() as conn:
        org = None if token is None else await scrape.organization_for(conn, token_digest(token))
        if org is None:
            return _text(
                401,
                "Unauthorized: send a scrape token as `Authorization: Bearer <token>`",
                **{"WWW-Authenticate": "Bearer"},
            )
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            settings = await reports.settings(conn, org)
            since = (clock.now() - timedelta(days=settings.window_days)).date()
            rows = await reports.scrape_totals(conn, org, since)
            box = await mailboxes.get(conn, org)
    mailbox = None if box is None else report_series.Mailbox(box.last_read_at, bool(box.last_error))
    text = b"".join(report_series.encode(rows, settings.window_days, mailbox))
    return Response(text, media_type=scrape_series.CONTENT_TYPE)


# --- managing tokens in the console -----------------------------------------------------------


async def _tokens_page(
    request: AnyRequest, pool: asyncpg.Pool, new_token: str | None = None
) -> Template:
    async with pool.acquire() as conn:
        tokens = await scrape.of_organization(conn, principal_of(request).organization_id)
    return page(request, "scrape_tokens.html", tokens=tokens, new_token=new_token)


@get("/scrape-tokens", name="console-scrape-tokens")
async def tokens_page(request: AnyRequest, pool: PoolDep) -> Template:
    guards.requires_admin(principal_of(request))
    return await _tokens_page(request, pool)


@post("/scrape-tokens", status_code=200)
async def create_token(request: AnyRequest, pool: PoolDep) -> Template:
    """A new token, shown once on the page that answers (only its digest is stored)."""
    guards.requires_admin(principal_of(request))
    form = await request.form()
    name = str(form.get("name", "")).strip()[:100].replace("\x00", "") or "prometheus"
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with pool.acquire() as conn:
        await scrape.create(conn, principal_of(request).organization_id, name, token_digest(token))
    log.info("scrape token created", name=name)
    return await _tokens_page(request, pool, new_token=token)


@post("/scrape-tokens/{token_id:str}/delete", status_code=303)
async def delete_token(request: AnyRequest, pool: PoolDep, token_id: PathStr) -> Redirect:
    guards.requires_admin(principal_of(request))
    try:
        ident = UUID(token_id)
    except ValueError:
        raise NotFoundException() from None
    async with pool.acquire() as conn:
        await scrape.delete(conn, principal_of(request).organization_id, ident)
    return Redirect(f"{PREFIX}/scrape-tokens", status_code=303)
