"""A public status page as JSON (`/status/{slug}/summary.json`) and as feeds
(`feed.atom`, `feed.rss`): the same allow-listed content as its HTML (`status.published`),
for scripts, dashboards and feed readers. Links are absolute under `PUBLIC_URL`."""

import re
from datetime import date, datetime
from typing import TypedDict
from xml.etree import ElementTree as ET

import msgspec
from litestar import MediaType, Response, get, head
from litestar.datastructures import ResponseHeader

from controller.settings import NotifySettings
from controller.statuspages.content import PageContent
from controller.web.console.status import PathStr, published
from controller.web.request_types import AnyRequest
from controller.web.services import ClockDep, NotifySettingsDep, PageCacheDep, PoolDep
from shared.timefmt import iso_ms

ATOM_NS = "http://www.w3.org/2005/Atom"
_CORS = [ResponseHeader(name="Access-Control-Allow-Origin", value="*")]


def _plain(value: object) -> object:
    """The page's content with times as ISO 8601 UTC strings."""
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# What XML 1.0 cannot carry (C0 controls but tab and newlines, surrogates, U+FFFE/U+FFFF):
# a notice's text with one of them would make the whole feed unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def public_url(notify_settings: NotifySettings) -> str:
    """PUBLIC_URL without its trailing slash; "" when unset (links are then relative: never
    built from the request's Host, which the client chooses)."""
    return (notify_settings.public_url or "").rstrip("/")


def _day(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def summary_of(page: PageContent, url: str) -> dict[str, object]:
    """The JSON summary (its schema is in docs/api.md, Public status pages)."""
    # The services hold no times: built as they are, not walked by `_plain` (90 days each).
    services = [
        {
            "name": service["name"],
            "hostname": service["hostname"],
            "kind": service["kind"],
            "state": service["state"],
            "countries": service["countries"],
            "uptimePercent": service["uptime"],
            "uptimeSince": _day(service["uptimeSince"]),
            "days": [{"day": b["day"], "uptimePercent": b["share"]} for b in service["bars"]],
        }
        for service in page["monitors"]
    ]
    return {
        "page": {"title": page["title"], "slug": page["slug"], "url": url},
        "updatedAt": iso_ms(page["updatedAt"]),
        "status": {"description": page["overall"]},
        "uptimeDays": page["days"],
        "services": services,
        "notices": _plain(page["notices"]),
        "incidents": _plain(page["incidents"]),
        "maintenance": _plain(page["maintenance"]),
    }


@get("/status/{slug:str}/summary.json", name="status-summary", response_headers=_CORS)
async def summary(
    slug: PathStr,
    request: AnyRequest,
    notify_settings: NotifySettingsDep,
    pool: PoolDep,
    page_cache: PageCacheDep,
    clock: ClockDep,
) -> Response[bytes]:
    url = f"{public_url(notify_settings)}/status/{slug}"
    found = await published(pool, page_cache, slug, clock)
    body = await found.body(("json", url), lambda page: msgspec.json.encode(summary_of(page, url)))
    return Response(body, media_type=MediaType.JSON)


@head("/status/{slug:str}/summary.json", name="status-summary-head")
async def summary_head(
    slug: PathStr,
    request: AnyRequest,
    pool: PoolDep,
    page_cache: PageCacheDep,
    clock: ClockDep,
) -> Response[None]:
    await published(pool, page_cache, slug, clock)
    return Response(content=None, media_type=MediaType.JSON)


class _Entry(TypedDict):
    id: str
    title: str
    updated: datetime
    published: datetime
    text: str


def _entries(page: PageContent, url: str) -> list[_Entry]:
    """Feed entries, newest first: each notice (its latest update as the text) and each
    incident the checks found."""
    out: list[_Entry] = []
    for n in page["notices"]:
        latest = n["updates"][0] if n["updates"] else None
        state = latest["state"] if latest else "investigating"
        lines = [f"{u['state'].capitalize()}: {u['body']}" for u in n["updates"]]
        out.append(
            {
                "id": f"{url}#notice-{n['id']}",
                "title": f"{n['title']} ({state})",
                "updated": latest["at"] if latest else n["createdAt"],
                "published": n["createdAt"],
                "text": "\n\n".join(lines),
            }
        )
    for i in page["incidents"]:
        ended = i["endedAt"]
        what = "resolved" if ended else "ongoing"
        out.append(
            {
                "id": f"{url}#incident-{i['monitor']}-{iso_ms(i['startedAt'])}",
                "title": f"{i['monitor']}: {i['cause']} ({what})",
                "updated": ended or i["startedAt"],
                "published": i["startedAt"],
                "text": f"{i['cause']}, seen from {i['countries']} countries, since"
                f" {iso_ms(i['startedAt'])}" + (f" until {iso_ms(ended)}" if ended else ""),
            }
        )
    return sorted(out, key=lambda e: e["updated"], reverse=True)[:50]


def atom_of(page: PageContent, url: str) -> bytes:
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        el.text = None if text is None else _xml_text(text)
        return el

    entries = _entries(page, url)
    sub(feed, "id", url)
    sub(feed, "title", page["title"])
    sub(feed, "updated", iso_ms(entries[0]["updated"] if entries else page["updatedAt"]))
    sub(feed, "link", href=url)
    sub(feed, "link", rel="self", href=f"{url}/feed.atom")
    author = sub(feed, "author")
    sub(author, "name", page["title"])
    for e in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", e["id"])
        sub(entry, "title", e["title"])
        sub(entry, "updated", iso_ms(e["updated"]))
        sub(entry, "published", iso_ms(e["published"]))
        sub(entry, "link", href=url)
        sub(entry, "content", e["text"], type="text")
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))


def rss_of(page: PageContent, url: str) -> bytes:
    from email.utils import format_datetime

    rss = ET.Element("rss", version="2.0")
    channel = ET.SubElement(rss, "channel")
    for tag, text in (
        ("title", page["title"]),
        ("link", url),
        ("description", f"Status of {page['title']}"),
        ("lastBuildDate", format_datetime(page["updatedAt"], usegmt=True)),
    ):
        ET.SubElement(channel, tag).text = _xml_text(text)
    for e in _entries(page, url):
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = _xml_text(e["title"])
        ET.SubElement(item, "link").text = url
        ET.SubElement(item, "guid", isPermaLink="false").text = e["id"]
        ET.SubElement(item, "pubDate").text = format_datetime(e["updated"], usegmt=True)
        ET.SubElement(item, "description").text = _xml_text(e["text"])
    return bytes(ET.tostring(rss, encoding="utf-8", xml_declaration=True))


@get("/status/{slug:str}/feed.atom", name="status-atom")
async def atom(
    slug: PathStr,
    request: AnyRequest,
    notify_settings: NotifySettingsDep,
    pool: PoolDep,
    page_cache: PageCacheDep,
    clock: ClockDep,
) -> Response[bytes]:
    url = f"{public_url(notify_settings)}/status/{slug}"
    body = await (await published(pool, page_cache, slug, clock)).body(
        ("atom", url), lambda page: atom_of(page, url)
    )
    return Response(body, media_type="application/atom+xml; charset=utf-8")


@get("/status/{slug:str}/feed.rss", name="status-rss")
async def rss(
    slug: PathStr,
    request: AnyRequest,
    notify_settings: NotifySettingsDep,
    pool: PoolDep,
    page_cache: PageCacheDep,
    clock: ClockDep,
) -> Response[bytes]:
    url = f"{public_url(notify_settings)}/status/{slug}"
    body = await (await published(pool, page_cache, slug, clock)).body(
        ("rss", url), lambda page: rss_of(page, url)
    )
    return Response(body, media_type="application/rss+xml; charset=utf-8")
