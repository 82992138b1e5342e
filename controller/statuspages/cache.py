"""Public status pages built at most once per `PAGE_TTL_S` per process, and rendered (HTML, JSON,
feeds) at most once per build.

A public page is the same for every visitor, and anyone may ask for it without an account: a
page of 1,000 services sums 90 days of hourly rollups for each and renders 90,000 day bars, so
built per visit a few anonymous clients could keep the database (which scheduler, ingester and
alerter share) and the event loop busy. Its content is kept per page as published (slug, title,
hostnames, monitors, newest notice update: read anew for each visitor with one indexed query),
so a change of what is published shows at once and results and states within `PAGE_TTL_S`.

Once a page's content is older than `PAGE_TTL_S`, the next visitor still gets it while one
rebuild runs in the background (and renders the forms asked for before, off the event loop);
content older than `PAGE_TTL_S + STALE_S` is never served
(that visitor waits for the rebuild). A page asked for at least that often is never built while
a visitor waits.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import structlog

from controller.statuspages.content import PageContent

log = structlog.get_logger(__name__)

PAGE_TTL_S = 30.0  # how stale a public page may be: its bars are days, its states rounds
STALE_S = 30.0  # how much longer an expired page is served while its rebuild runs


class Published:
    """A page's content and the bodies rendered from it, each rendered once."""

    def __init__(self, content: PageContent) -> None:
        self.content = content
        self._bodies: dict[Hashable, bytes] = {}
        self._renders: dict[Hashable, Callable[[PageContent], bytes]] = {}

    async def body(self, form: Hashable, render: Callable[[PageContent], bytes]) -> bytes:
        """The page as `form` (e.g. ("json", its URL)), rendered by `render` the first time, off
        the event loop (a thousand services' HTML is megabytes)."""
        held = self._bodies.get(form)
        if held is None:
            held = await asyncio.to_thread(render, self.content)
            self._bodies[form] = held
            self._renders[form] = render
        return held

    async def render_as(self, before: "Published") -> None:
        """Render the forms visitors asked `before` for."""
        for form, render in list(before._renders.items()):
            await self.body(form, render)


@dataclass
class _Held:
    expires: float
    built: "asyncio.Future[Published]"
    rebuild: "asyncio.Task[None] | None" = field(default=None)


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class PageCache:
    """`clock`: seconds, monotonic (the event loop's time unless given)."""

    def __init__(self, clock: Callable[[], float] = _loop_time) -> None:
        self._pages: dict[Hashable, _Held] = {}
        self._clock = clock

    async def get(self, key: Hashable, build: Callable[[], Awaitable[PageContent]]) -> Published:
        now = self._clock()
        held = self._pages.get(key)
        if held is not None and held.built.done() and held.expires <= now:
            if held.built.exception() is not None or held.expires + STALE_S <= now:
                held = None
            elif held.rebuild is None:
                held.rebuild = asyncio.create_task(self._rebuild(key, held, build))
        if held is None:
            self._pages = {k: v for k, v in self._pages.items() if v.expires + STALE_S > now}
            held = _Held(now + PAGE_TTL_S, asyncio.ensure_future(_published(build)))
            self._pages[key] = held
        try:
            # Shielded: a visitor who hangs up does not cancel the others' page.
            return await asyncio.shield(held.built)
        except Exception:
            if self._pages.get(key) is held:  # an error is not kept for the next visitor
                del self._pages[key]
            raise

    async def _rebuild(
        self, key: Hashable, held: _Held, build: Callable[[], Awaitable[PageContent]]
    ) -> None:
        try:
            page = await _published(build)
            await page.render_as(held.built.result())
        except Exception:
            log.warning("status page rebuild failed", exc_info=True)
            held.rebuild = None  # the next visitor tries again
            return
        fresh: asyncio.Future[Published] = asyncio.get_running_loop().create_future()
        fresh.set_result(page)
        if self._pages.get(key) is held:
            self._pages[key] = _Held(self._clock() + PAGE_TTL_S, fresh)


async def _published(build: Callable[[], Awaitable[PageContent]]) -> Published:
    return Published(await build())
