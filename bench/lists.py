"""API lists and status pages with 100,000 monitors in one organization (issue 24): server
time of the paginated API lists (first, middle and last page, filtered by status, by search and
by customer), of the customers list and of a status page with 1,000 monitors (its HTML and its
summary.json); sequential requests on loopback to one API process, the monitors seeded in
PostgreSQL directly with a latest state in three countries.

Target: p95 < 300 ms for each.
"""

import asyncio

from bench.common import Stack, machine, percentile, verdict
from bench.console import _timed
from controller.db.pool import connect

MONITORS = 100_000
COUNTRIES = ("DE", "US", "SG")
ON_PAGE = 1000
REQUESTS = 20
TARGET_MS = 300.0


async def _states(database_url: str) -> str:
    """Latest states in three countries for every monitor (one in nine down somewhere) and a
    status page showing ON_PAGE of them; return its slug."""
    conn = await connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO monitor_country_state (monitor_id, country, last_status,"
            " last_scheduled_at, last_job_id)"
            " SELECT m.id, c, CASE WHEN (m.id + length(c)) % 9 = 0 THEN 'down' ELSE 'up' END,"
            " now(), 'job-' || m.id || c FROM monitors m, unnest($1::text[]) c",
            list(COUNTRIES),
        )
        await conn.execute("UPDATE monitors SET status = 'maintenance' WHERE id % 50 = 0")
        first = await conn.fetchrow(
            "SELECT organization_id, customer_id FROM monitors ORDER BY id LIMIT 1"
        )
        assert first is not None
        org, customer = first["organization_id"], first["customer_id"]
        page = await conn.fetchval(
            "INSERT INTO status_pages (organization_id, customer_id, slug, title)"
            " VALUES ($1, $2, 'bench', 'Bench') RETURNING id",
            org,
            customer,
        )
        await conn.execute(
            "INSERT INTO status_page_monitors SELECT $1, id FROM monitors ORDER BY id LIMIT $2",
            page,
            ON_PAGE,
        )
        await conn.execute("ANALYZE")
        return "bench"
    finally:
        await conn.close()


def run() -> bool:
    stack = Stack()
    try:
        seeded = stack.seed(MONITORS)
        slug = asyncio.run(_states(stack.database_url))
        url = stack.serve()
        auth = {"Authorization": f"Bearer {seeded.token}"}
        last = MONITORS // 50
        lists = f"{url}/api/smtp-monitors"
        pages = {
            "smtp monitors, page 1 of 50": (f"{lists}?page=1&perPage=50", auth),
            "smtp monitors, page 1,000": (f"{lists}?page={last // 2}&perPage=50", auth),
            f"smtp monitors, page {last:,}": (f"{lists}?page={last}&perPage=50", auth),
            "smtp monitors, 100 a page": (f"{lists}?perPage=100", auth),
            "smtp monitors, status": (f"{lists}?status=maintenance", auth),
            "smtp monitors, search": (f"{lists}?search=mx4242", auth),
            "smtp monitors, customer": (f"{lists}?customerId={seeded.customer_id}", auth),
            "imap/pop monitors (none)": (f"{url}/api/imap-pop-monitors", auth),
            "customers": (f"{url}/api/customers", auth),
            f"status page ({ON_PAGE:,})": (f"{url}/status/{slug}", {}),
            "status summary.json": (f"{url}/status/{slug}/summary.json", {}),
        }
        print(f"API lists with {MONITORS:,} monitors in one organization ({machine()})")
        ok = True
        for name, (target_url, headers) in pages.items():
            _timed(target_url, headers, 3)  # warm-up: plans cached
            ms = _timed(target_url, headers, REQUESTS)
            p50, p95 = percentile(ms, 50), percentile(ms, 95)
            met = p95 < TARGET_MS
            ok = ok and met
            print(
                f"  {name:<30} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
                f"   target p95 < {TARGET_MS:.0f} ms: {verdict(met)}",
                flush=True,
            )
        return ok
    finally:
        stack.close()
