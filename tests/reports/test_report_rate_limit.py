"""The report endpoint's rate limit (REPORTS_POSTS_PER_MINUTE per client address): past it a
POST is answered 429 with Retry-After before its handler runs, and still counted in
`mailprobe_reports{kind="unknown",via="https",outcome="rate_limited"}`, so every refusal on every
path is in the metric. Other paths' 429s are not report refusals."""

import asyncpg
import httpx
from prometheus_client import REGISTRY

from controller.settings import ControllerSettings
from controller.web.app import create_app
from testkit.serving import serve_app

LABELS = {"kind": "unknown", "via": "https", "outcome": "rate_limited"}


def _limited() -> float:
    return REGISTRY.get_sample_value("mailprobe_reports_total", LABELS) or 0.0


async def test_a_post_past_the_rate_limit_is_a_counted_429(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    app = create_app(settings.replace(reports_posts_per_minute=2), pool)
    before = _limited()
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        path = "/reports/tls/nobody.example.com/" + "a" * 32
        answers = [(await client.post(path, content=b"{}")).status_code for _ in range(3)]
        assert answers == [404, 404, 429]
        limited = await client.post(path, content=b"{}")
        assert limited.status_code == 429 and "Retry-After" in limited.headers
        assert _limited() == before + 2
        assert (await client.get("/health")).status_code == 200
    assert _limited() == before + 2
