"""Talking to the console over real HTTP like a browser does: the session and CSRF cookies sent
back by hand (httpx keeps no `Secure` cookie over plain HTTP), the CSRF token read off the form."""

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import asyncpg
import httpx
import msgspec

from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.jobs.rules import JobIds
from shared.timefmt import iso_ms, utcnow

_CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


@dataclass
class Browserish:
    """An httpx client with a session token (an API token, as the console's login issues)."""

    http: httpx.AsyncClient
    session: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        jar = dict(self.cookies)
        if self.session is not None:
            jar["mp_session"] = self.session
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}

    def _keep(self, r: httpx.Response) -> None:
        for header in r.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]

    async def get(self, path: str) -> httpx.Response:
        r = await self.http.get(path, headers=self.headers())
        self._keep(r)
        return r

    async def csrf(self, path: str = "/console/") -> str:
        """The CSRF token of the forms on `path` (the page also sets the CSRF cookie)."""
        r = await self.get(path)
        found = _CSRF_FIELD.search(r.text)
        assert found, r.text[:500]
        return found.group(1)

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, token: str | None = None
    ) -> httpx.Response:
        form = dict(data or {})
        if token is not None:
            form["_csrf_token"] = token
        r = await self.http.post(path, data=form, headers=self.headers())
        self._keep(r)
        return r


async def store_result(
    pool: asyncpg.Pool,
    job_ids: JobIds,
    monitor: dict[str, Any],
    country: str,
    status: str,
    *,
    ago: timedelta = timedelta(minutes=1),
    response_ms: float | None = 42.0,
    message: str = "",
    error_kind: str | None = None,
    cert_days_left: int | None = None,
    cert_not_after: str | None = None,
    monitor_type: str = "smtp",
    phases: dict[str, float] | None = None,
    folder: str | None = None,
    failed_after_ms: float | None = None,
    at: datetime | None = None,
    auth_results: dict[str, Any] | None = None,
    arc: dict[str, Any] | None = None,
) -> None:
    """A check result stored as the ingester stores an agent's (the same `results.store`);
    `failed_after_ms`: the response time a failed check reports (a refused one takes ~1 ms);
    `at`: its round's time (the countries of one round share it), else `ago` before now."""
    at = at or utcnow() - ago
    wire = {
        "jobId": job_ids.make(monitor["publicId"], country, at),
        "monitorId": monitor["publicId"],
        "monitorType": monitor_type,
        "country": country,
        "agentId": f"{country}-1",
        "scheduledAt": iso_ms(at),
        "startedAt": iso_ms(at),
        "finishedAt": iso_ms(at + timedelta(seconds=1)),
        "status": status,
        "errorKind": error_kind,
        "message": message,
        "responseTimeMs": response_ms if status == "up" else failed_after_ms,
        "phases": phases
        if phases is not None
        else ({"dnsMs": 1.0, "connectMs": 5.0, "greetingMs": 20.0} if status == "up" else {}),
        "folder": folder,
        "authResults": auth_results,
        "arc": arc,
        "tls": None
        if cert_days_left is None and cert_not_after is None
        else {"version": "TLSv1.3", "certDaysLeft": cert_days_left, "certNotAfter": cert_not_after},
    }
    row = msgspec.convert(wire, CheckedResult)
    async with pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, [row], now=utcnow()) == 1


class _FormReader(HTMLParser):
    """The values a browser would submit for the form `form_id` as the page has it filled in:
    text inputs and textareas, checked boxes and radios, each select's chosen option."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.values: dict[str, str]
        self.form_id, self.inside, self.values = form_id, False, {}
        self._select: str | None = None
        self._first: str | None = None
        self._area: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or ("name" not in a and tag not in ("option",)):
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.values[a["name"]] = a.get("value", "on")
            elif kind != "submit":
                self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select, self._first = a["name"], None
        elif tag == "option" and self._select is not None:
            if self._first is None:
                self._first = a.get("value", "")
            if "selected" in a:
                self.values[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._area = a["name"]
            self.values[self._area] = ""

    def handle_data(self, data: str) -> None:
        if self._area is not None:
            self.values[self._area] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            self.values.setdefault(self._select, self._first or "")
            self._select = None
        elif tag == "textarea":
            self._area = None
        elif tag == "form":
            self.inside = False


def form_values(html: str, form_id: str = "new-monitor") -> dict[str, str]:
    """What submitting the form unchanged sends (the CSRF token left out)."""
    reader = _FormReader(form_id)
    reader.feed(html)
    values: dict[str, str] = reader.values
    values.pop("_csrf_token", None)
    return values
