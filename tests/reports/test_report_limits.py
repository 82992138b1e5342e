"""Reports come from strangers, and what they cost is bounded per organization and domain (real
PostgreSQL, the real app over HTTPS): reports and rows an hour and rows stored, each refused
with its own reason, counted and listed; reports older than the window refused (`too_old`);
duplicates decided on content, so a forger claiming a real report's id suppresses nothing; each
domain's token rotated by owners and admins only (API and console), the old one accepted for
the grace and refused after; a row flood judged and shown from the running aggregates, the
controller's memory and the totals API's and console page's times printed."""

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client import REGISTRY

from controller.notify.links import Links
from controller.reports import intake
from controller.reports import store as db
from controller.reports.content import digest
from controller.reports.parse import Report, Row
from controller.sidechecks.reports.rules import Count, ReportSettings, judge, window
from shared.timefmt import utcnow
from testkit.reports import made
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish
from tests.reports.test_tls_endpoint import GZIP, _address, _monitor, _posture

FLOOD_REPORTS = 6  # as the attack; `make bench report-rows` runs 100,000-row reports
FLOOD_ROWS = 3_000
RSS_GROWTH_MAX = 100 << 20


def _failures(domain: str, n: int, tag: str = "", count: int = 1) -> list[dict[str, Any]]:
    """`n` distinct TLS failures (each its own MX), the first `count` sessions large."""
    return [
        {
            "result-type": "certificate-expired",
            "receiving-mx-hostname": f"mx{tag}{i}.{domain}",
            "receiving-ip": f"203.0.{i // 250 % 250}.{i % 250 + 1}",
            "failed-session-count": count + (n - i),
        }
        for i in range(n)
    ]


def _tls(domain: str, **kwargs: Any) -> bytes:
    return made.tls_gzip(made.tls_json(domain, **kwargs))


async def _rejected(https: httpx.AsyncClient, tenant: Tenant) -> list[str]:
    r = await https.get("/api/rejected-reports", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    return [x["reason"] for x in r.json()]


def _counted(outcome: str, kind: str = "tls", via: str = "mail") -> float:
    labels = {"kind": kind, "via": via, "outcome": outcome}
    return REGISTRY.get_sample_value("mailprobe_reports_total", labels) or 0.0


async def test_reports_and_rows_past_the_hourly_and_stored_bounds_are_refused_with_their_reason(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    other = "other-" + domain
    await _monitor(https, tenant, domain)
    await _monitor(https, tenant, other)

    async def take(d: str, limits: intake.Limits, **kwargs: Any) -> intake.Taken:
        return await intake.take(
            pool,
            tenant.org_id,
            _tls(d, **kwargs),
            "mail",
            "t",
            Links(),
            limits=limits,
            now=utcnow(),
        )

    before = {r: _counted(r) for r in ("too_many_reports", "too_many_rows", "rows_kept_full")}
    few = intake.Limits(reports_per_hour=3)
    for i in range(3):
        assert (await take(domain, few, successes=i + 1)).stored
    refused = await take(domain, few, successes=99)
    assert (refused.stored, refused.reason) == (False, "too_many_reports")
    assert "REPORTS_PER_HOUR" in refused.message
    assert (await take(other, few, successes=1)).stored  # each domain its own bound

    # A report is 4 rows here (its successes summed, 3 failures).
    rows = intake.Limits(rows_per_hour=6)
    fresh = "rows-" + domain
    await _monitor(https, tenant, fresh)
    assert (await take(fresh, rows, successes=1)).stored
    refused = await take(fresh, rows, successes=2)
    assert (refused.stored, refused.reason) == (False, "too_many_rows")

    kept = intake.Limits(rows_kept=5)
    full = "kept-" + domain
    await _monitor(https, tenant, full)
    assert (await take(full, kept, successes=1)).stored
    refused = await take(full, kept, failures=_failures(full, 3, "b"))
    assert (refused.stored, refused.reason) == (False, "rows_kept_full")
    assert "REPORT_ROWS_KEPT" in refused.message

    assert await _rejected(https, tenant) == ["rows_kept_full", "too_many_rows", "too_many_reports"]
    for reason, was in before.items():
        assert _counted(reason) == was + 1, reason
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT rows FROM report_domain_rows WHERE organization_id = $1 AND domain = $2",
            tenant.org_id,
            full,
        )
    assert stored == 4  # the refused report added nothing


async def test_a_report_older_than_the_window_is_refused_too_old_and_listed(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    was = _counted("too_old", via="https")
    old = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=9)
    r = await https.post(path, content=_tls(domain, begins=old), headers=GZIP)
    assert r.status_code == 400 and r.json()["code"] == "too_old", r.text
    assert "7-day report window" in r.json()["message"]
    assert await _rejected(https, tenant) == ["too_old"]
    assert _counted("too_old", via="https") == was + 1
    # Within a wider window it is taken.
    async with pool.acquire() as conn:
        await db.save_settings(
            conn, tenant.org_id, ReportSettings(window_days=30), datetime.now(UTC)
        )
    r = await https.post(path, content=_tls(domain, begins=old), headers=GZIP)
    assert r.status_code == 200 and r.json()["stored"], r.text


async def test_a_forger_claiming_a_real_reports_id_suppresses_nothing(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    monitor = await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    real_id = f"2026-11-26T00:00:00Z_{domain}"
    forged = made.tls_json(domain, report_id=real_id, failures=[], successes=1)
    r = await https.post(path, content=made.tls_gzip(forged), headers=GZIP)
    assert r.json()["stored"], r.text
    real = made.tls_json(domain, report_id=real_id)
    r = await https.post(path, content=made.tls_gzip(real), headers=GZIP)
    assert r.status_code == 200 and r.json() == {"stored": True, "kind": "tls", "reason": None}
    assert "tls_failures_reported" in await _posture(https, tenant, monitor)
    # A retry of the real one, repacked as plain JSON with its keys in another order, is the
    # same content: a duplicate; and so under another id.
    again = json.dumps(dict(reversed(list(real.items())))).encode()
    r = await https.post(path, content=again, headers={"Content-Type": "application/tlsrpt+json"})
    assert r.json()["reason"] == "duplicate", r.text
    renamed = made.tls_gzip({**real, "report-id": "another-id"})
    assert (await https.post(path, content=renamed, headers=GZIP)).json()["reason"] == "duplicate"


async def test_a_token_is_rotated_by_owners_and_admins_only_the_old_one_refused_after_the_grace(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    await _monitor(https, tenant, domain)
    stranger = await make_tenant(pool)
    await _monitor(https, stranger, domain)  # another organization naming the same domain
    old = await _address(https, tenant, domain, str(https.base_url))
    theirs = await _address(https, stranger, domain, str(https.base_url))
    rotate = f"/api/report-domains/{domain}/rotate-token"

    for who in ("member", "readonly"):
        r = await https.post(rotate, headers=tenant.auth(who))
        assert r.status_code == 403, (who, r.text)
    r = await https.post(f"/api/report-domains/nobody-{domain}/rotate-token", headers=tenant.auth())
    assert r.status_code == 404, r.text
    # Another organization's admin rotates its own token, never this one's.
    r = await https.post(rotate, headers=stranger.auth("admin"))
    assert r.status_code == 200 and r.json()["tokenGeneration"] == 1
    assert await _address(https, tenant, domain, str(https.base_url)) == old

    r = await https.post(rotate, headers=tenant.auth("owner"))
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["tokenGeneration"] == 1 and shown["previousTokenUntil"] is not None
    new = await _address(https, tenant, domain, str(https.base_url))
    assert new != old and new.rsplit("/", 1)[0] == old.rsplit("/", 1)[0]
    listed = (await https.get("/api/report-domains", headers=stranger.auth())).json()
    assert all(new not in (d["tlsRptHttps"] or "") for d in listed)

    async def post(path: str, n: int) -> int:
        body = _tls(domain, successes=n)
        return (await https.post(path, content=body, headers=GZIP)).status_code

    assert await post(new, 1) == 200
    assert await post(old, 2) == 200  # within the grace
    assert await post(theirs, 3) == 200  # the stranger's, in its own grace: the stranger's
    async with pool.acquire() as conn:  # the grace is over
        await conn.execute(
            "UPDATE report_tokens SET grace_until = now() - interval '1 second'"
            " WHERE organization_id = $1",
            tenant.org_id,
        )
    assert await post(old, 4) == 404
    assert await post(new, 5) == 200
    # Rotating again: the generation before is accepted for the grace, older ones never.
    assert (await https.post(rotate, headers=tenant.auth("admin"))).json()["tokenGeneration"] == 2
    assert await post(new, 6) == 200
    assert await post(old, 7) == 404

    # The console: the record, its warning (PUBLIC_URL is http here), the button for admins.
    readonly = Browserish(https, session=tenant.tokens["readonly"])
    page = await readonly.get(f"/console/reports/{domain}")
    assert page.status_code == 200, page.text
    assert "v=TLSRPTv1; rua=http://localhost:8080/reports/tls/" in page.text
    assert "RFC 8460 allows only https: and mailto:" in page.text
    assert 'id="rotate-token"' not in page.text
    csrf = await readonly.csrf(f"/console/reports/{domain}")
    r = await readonly.post(f"/console/reports/{domain}/rotate-token", token=csrf)
    assert r.status_code == 403, r.text
    owner = Browserish(https, session=tenant.tokens["owner"])
    csrf = await owner.csrf(f"/console/reports/{domain}")
    r = await owner.post(f"/console/reports/{domain}/rotate-token", token=csrf)
    assert r.status_code == 303, r.text
    page = await owner.get(f"/console/reports/{domain}")
    assert "Token generation 3" in page.text and "previous token is accepted until" in page.text
    r = await owner.post(f"/console/reports/nobody-{domain}/rotate-token", token=csrf)
    assert r.status_code == 404
    # The other organization's page shows its own token, which this one's rotations left alone.
    theirs_page = await Browserish(https, session=stranger.tokens["owner"]).get(
        f"/console/reports/{domain}"
    )
    assert "Token generation 1" in theirs_page.text


async def test_the_stored_window_is_the_reference_window(
    pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    """Random reports (seed 64) summed by the store in SQL read as `rules.window` sums them."""
    rng = random.Random(64)
    counts: list[Count] = []
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    async with pool.acquire() as conn, conn.transaction():
        for i in range(12):
            kind = rng.choice(["tls", "dmarc"])
            reporter = rng.choice(["Google LLC", "Microsoft", "a", "B"])
            begins = today - timedelta(days=rng.randrange(3))
            rows = []
            for _ in range(rng.randrange(1, 40)):
                if kind == "tls":
                    result = rng.choice(
                        ["success", "certificate-expired", "starttls-not-supported"]
                    )
                    row = Row(
                        result,
                        rng.randrange(1, 50),
                        f"mx{rng.randrange(8)}.x",
                        f"203.0.113.{rng.randrange(4)}",
                    )
                else:
                    ip = rng.choice(
                        ["192.0.2.", "198.51.100.", "2001:db8:0:1::", "::ffff:192.0.2."]
                    ) + str(rng.randrange(1, 9))
                    row = Row(rng.choice(["pass", "fail"]), rng.randrange(1, 50), "", ip)
                rows.append((domain, row))
                counts.append(
                    Count(kind, reporter, row.result, row.mx, row.ip, row.count, begins.date())
                )
            report = Report(
                "tls" if kind == "tls" else "dmarc",
                reporter,
                f"r{i}",
                begins,
                begins + timedelta(hours=23),
                (domain,),
                tuple(rows),
            )
            summed = db.summed(report)
            await db.insert(
                conn, tenant.org_id, report, summed, digest(report), "mail", 1, "", utcnow()
            )
        stored = await db.window(conn, tenant.org_id, domain, (today - timedelta(days=7)).date())
        raise_ = ReportSettings(tls_failures_min=1, dmarc_failures_min=1, dmarc_unknown_min=1)
        assert judge(stored, raise_, "mx1.x", {}) == judge(window(counts), raise_, "mx1.x", {})
    assert stored == window(counts)
    print(
        f"\nwindow of {len(counts)} rows: {stored.failures} failures,"
        f" {len(stored.networks)} networks"
    )


def _peak_reset() -> int:
    """The resident size now, its peak (VmHWM) starting again from it."""
    Path("/proc/self/clear_refs").write_text("5")
    return _rss()


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_a_row_flood_is_judged_and_shown_from_the_running_aggregates(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    """Six reports of thousands of distinct failures each (the issue's 600,000-row attack,
    scaled; `make bench report-rows` runs it at full size): stored, summed, judged; the totals
    API and the console page read the aggregates; the controller's peak memory grows by less
    than 100 MB (the app runs in this process)."""
    monitor = await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    start = _peak_reset()
    truth: dict[str, int] = {}
    for i in range(FLOOD_REPORTS):
        failures = _failures(domain, FLOOD_ROWS, f"r{i}-")
        for f in failures:
            truth[f["receiving-mx-hostname"]] = f["failed-session-count"]
        r = await https.post(path, content=_tls(domain, failures=failures), headers=GZIP)
        assert r.status_code == 200 and r.json()["stored"], r.text
    began = time.perf_counter()
    r = await https.get(f"/api/report-domains/{domain}/totals", headers=tenant.auth("readonly"))
    totals_s = time.perf_counter() - began
    assert r.status_code == 200, r.text
    failed = sum(d["count"] for d in r.json()["days"] if d["result"] == "certificate-expired")
    assert failed == sum(truth.values())
    began = time.perf_counter()
    page = await Browserish(https, session=tenant.tokens["readonly"]).get(
        f"/console/reports/{domain}"
    )
    page_s = time.perf_counter() - began
    assert page.status_code == 200
    detail = (await _posture(https, tenant, monitor))["tls_failures_reported"]["detail"]
    rows = len(truth) + 1  # the flood's, and the TLSA policy's mx-backup (one row a day)
    assert detail.endswith(f"; and more ({rows:,} failure rows in all)"), detail[-80:]
    # The next one-row report is judged from the aggregates, not from the window's rows.
    one = made.tls_json(
        domain, failures=[{"result-type": "dane-required", "failed-session-count": 1}]
    )
    began = time.perf_counter()
    r = await https.post(path, content=made.tls_gzip(one), headers=GZIP)
    next_s = time.perf_counter() - began
    assert r.json()["stored"], r.text
    grown = _rss() - start
    print(
        f"\nrow flood of {FLOOD_REPORTS} x {FLOOD_ROWS} rows: peak RSS +{grown / 2**20:.0f} MB;"
        f" totals API {totals_s * 1000:.0f} ms, console page {page_s * 1000:.0f} ms,"
        f" next one-row report {next_s * 1000:.0f} ms ({rows} rows stored)"
    )
    assert grown < RSS_GROWTH_MAX


async def test_a_dmarc_network_flood_is_judged_and_charted_from_the_aggregates(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    """Reports of many networks that never passed and the domain's own that did: the finding
    counts every failed message, names the largest networks; the chart names the largest
    networks and sums the rest as others."""
    monitor = await _monitor(https, tenant, domain)
    own = [("192.0.2.10", 500, "pass", "pass"), ("192.0.2.11", 40, "fail", "fail")]
    strangers = [(f"198.{n // 250}.{n % 250}.7", 1 + n % 3, "fail", "fail") for n in range(600)]
    for i, records in enumerate([own + strangers[:300], strangers[300:]]):
        body = made.dmarc_zip(domain, records=records, report_id=f"flood-{i}")
        taken = await intake.take(pool, tenant.org_id, body, "mail", "t", Links(), now=utcnow())
        assert taken.stored, taken
    found = await _posture(https, tenant, monitor)
    unknown = sum(n for _, n, _, _ in strangers)
    assert found["dmarc_unknown_source"]["detail"].startswith(
        f"{unknown} messages from 600 networks sent in the domain's name and never passed DMARC"
    )
    assert found["dmarc_failures_reported"]["detail"] == (
        "40 messages from 1 networks failed DMARC alignment: 192.0.2.0/24: 40 messages (500 passed)"
    )
    page = await Browserish(https, session=tenant.tokens["readonly"]).get(
        f"/console/reports/{domain}"
    )
    assert page.status_code == 200, page.text
    assert "192.0.2.0/24" in page.text and "others" in page.text
    r = await https.get(f"/api/report-domains/{domain}/totals", headers=tenant.auth("readonly"))
    fails = sum(
        d["count"] for d in r.json()["days"] if d["kind"] == "dmarc" and d["result"] == "fail"
    )
    assert fails == unknown + 40


async def test_past_its_hourly_reports_a_domains_report_is_refused_unread(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    """At the HTTPS address a domain whose reports this hour are spent costs no parsing: even
    garbage is refused `too_many_reports`, not `malformed`."""
    await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO report_intake (organization_id, domain, hour, reports, rows)"
            " VALUES ($1, $2, $3, 200, 0)",
            tenant.org_id,
            domain,
            hour,
        )
    r = await https.post(path, content=b"{not json", headers=GZIP)
    assert r.status_code == 400 and r.json()["code"] == "too_many_reports", r.text
    assert await _rejected(https, tenant) == ["too_many_reports"]


async def test_reports_refused_once_parsed_count_against_the_domains_hour(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    """A sender of reports its parser refuses (`malformed`) or refused after parsing
    (`too_old`) spends the domain's REPORTS_PER_HOUR as one whose reports are taken: once it is
    spent, the next is refused before any parser is used (unfixed, all of them were parsed and
    the domain's next report taken)."""
    await _monitor(https, tenant, domain)
    few = intake.Limits(reports_per_hour=4)
    old = utcnow() - timedelta(days=400)

    async def take(data: bytes) -> intake.Taken:
        return await intake.take(
            pool,
            tenant.org_id,
            data,
            "https",
            "t",
            Links(),
            domain,
            kind="tls",
            limits=few,
            now=utcnow(),
        )

    refused = [await take(b"{not json") for _ in range(2)]
    refused += [await take(_tls(domain, begins=old, report_id=f"old-{i}")) for i in range(2)]
    reasons = [t.reason for t in refused]
    assert reasons == ["malformed", "malformed", "too_old", "too_old"], reasons
    began = time.perf_counter()
    after = await take(_tls(domain))
    spent_ms = 1000 * (time.perf_counter() - began)
    print(
        f"after {len(refused)} refused reports ({reasons}): {after.reason!r} in {spent_ms:.0f} ms"
    )
    assert (after.stored, after.reason) == (False, "too_many_reports"), after
