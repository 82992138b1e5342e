"""Reports from strangers, attacked as a stranger holding a domain's published TLS-RPT address
would (real uvicorn with TLS, real PostgreSQL): what one report may make the controller add up,
and what one organization's reports may do to another's or to the domain's later reports."""

import json
import typing

import asyncpg
import httpx

from controller.reports import parse
from controller.settings import ReportsSettings
from testkit.reports import made
from tests.conftest import Tenant
from tests.reports.test_tls_endpoint import JSON, _address, _monitor

BIGINT = 2**63 - 1


def _report(domain: str, reporter: str, counts: list[int]) -> bytes:
    """A TLS-RPT report whose failure details (one per MX) count `counts`."""
    failures = [
        {
            "result-type": "certificate-expired",
            "receiving-mx-hostname": f"mx{i}.{domain}",
            "receiving-ip": "203.0.113.56",
            "failed-session-count": n,
        }
        for i, n in enumerate(counts)
    ]
    body = made.tls_json(domain, reporter=reporter, failures=failures, successes=1)
    body["policies"][0]["summary"]["total-failure-session-count"] = 1  # not what is summed
    return json.dumps(body).encode()


async def test_counts_past_what_the_totals_hold_are_refused_and_never_strand_the_domain(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    # One report whose counts sum past a bigint: refused, not a 500.
    past = _report(domain, "Forger 0", [2**53] * 1100)
    r = await https.post(path, content=past, headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "malformed" and "count" in r.json()["message"], r.text
    # Two reports each just within a bigint, from two reporters: the window's sums of them
    # would pass it, and every later report of the domain would fail to be judged.
    for n in range(2):
        forged = _report(domain, f"Forger {n + 1}", [2**53] * 1000)
        r = await https.post(path, content=forged, headers=JSON)
        assert r.status_code == 400, r.text
    real = made.tls_json(domain, reporter="Google LLC")
    r = await https.post(path, content=json.dumps(real).encode(), headers=JSON)
    assert r.status_code == 200 and r.json()["stored"] is True, r.text
    r = await https.get(f"/api/report-domains/{domain}/totals", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    # Counts each within the bound that sum past it are refused by their sum.
    r = await https.post(path, content=_report(domain, "Forger 3", [2**35] * 3), headers=JSON)
    assert r.status_code == 400 and "counts sum to" in r.json()["message"], r.text
    # A report of tens of billions of sessions (more than any reporter sends a day) is taken.
    at = _report(domain, "Big Reporter", [4 * 10**10, 10**10])
    r = await https.post(path, content=at, headers=JSON)
    assert r.status_code == 200 and r.json()["stored"] is True, r.text


def test_a_domains_counts_summed_over_the_longest_totals_stay_a_bigint() -> None:
    hint = typing.get_type_hints(ReportsSettings, include_extras=True)["reports_per_hour"]
    most = int(hint.__metadata__[0].le)  # REPORTS_PER_HOUR's ceiling
    days = 400  # GET /api/report-domains/{d}/totals?days= reaches back at most
    summed = most * 24 * days * parse.MAX_COUNT
    print(f"{most} reports/h * 24 h * {days} days * {parse.MAX_COUNT} = {summed}")
    assert summed <= BIGINT
