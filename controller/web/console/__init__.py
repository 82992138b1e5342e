"""The web console (`/console`), public status pages (`/status/{slug}`), per-monitor Prometheus
series (`/metrics/monitors`) and the API docs' assets: everything a browser loads comes from this
package or another installed one, never from a CDN."""

from pathlib import Path

import asyncpg
from litestar import Router, get
from litestar.datastructures import ResponseHeader
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from openapi_ui_bundles import swagger_ui

from controller.secrets.box import SecretBox
from controller.web.api.errors import ApiError
from controller.web.console import (
    channels,
    dates,
    findings,
    forms,
    hosts,
    incidents,
    pages,
    report_pages,
    reputation_pages,
    scrape,
    status,
    status_feeds,
    status_notice_forms,
    status_subscribe,
)
from controller.web.console.session import PREFIX, csrf_middleware, session_auth
from controller.web.console.static_files import StaticFileSystem
from shared.clock import Clock

HERE = Path(__file__).parent
DOCS_ASSETS = "/schema-assets"

# Only this origin's scripts, styles and images; no framing; forms post only here.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=_CSP),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
    ResponseHeader(name="Cache-Control", value="no-store"),
]


@get("/", include_in_schema=False)
async def root() -> Redirect:
    """`make run`'s address opens onto the console."""
    return Redirect(f"{PREFIX}/", status_code=302)


def _filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["when"] = dates.when  # every time the pages show (`dates`)
    engine.engine.filters["host"] = hosts.host  # host names that wrap at their labels


@get("/favicon.ico", include_in_schema=False, status_code=204)
async def favicon() -> None:
    """No icon, said without an error: browsers ask for one on every page (a 404 is logged in
    their consoles as a failed load)."""


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(
        directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_filters
    )


def routers(box: SecretBox, pool: asyncpg.Pool, clock: Clock) -> list[Router]:
    console = Router(
        path=PREFIX,
        route_handlers=[
            pages.login_form,
            pages.login,
            pages.logout,
            pages.overview,
            pages.overview_part,
            pages.monitor_page,
            pages.monitor_part,
            pages.trigger,
            pages.pause,
            pages.resume,
            pages.delete,
            pages.agents_page,
            incidents.incidents_page,
            incidents.incident_page,
            findings.findings_page,
            report_pages.reports_page,
            reputation_pages.reputation_page,
            report_pages.domain_page,
            report_pages.rotate_token,
            forms.new_form,
            forms.create,
            forms.edit_form,
            forms.edit,
            status.admin,
            status.save,
            status.unpublish,
            status_notice_forms.create,
            status_notice_forms.add_update,
            scrape.tokens_page,
            scrape.create_token,
            scrape.delete_token,
            channels.channels_page,
            channels.create_channel,
            channels.test_channel,
            channels.choose_channel,
            channels.delete_channel,
            create_static_files_router(
                path="/static", directories=[HERE / "static"], file_system=StaticFileSystem()
            ),
        ],
        middleware=[session_auth(pool, clock), csrf_middleware(box)],
        exception_handlers={
            ApiError: pages.error_page,
            NotFoundException: pages.error_page,
            PermissionDeniedException: pages.error_page,
        },
        response_headers=_HEADERS,
        include_in_schema=False,
    )
    public = Router(
        path="/",
        route_handlers=[
            root,
            favicon,
            status.public,
            status.public_head,
            status_feeds.summary,
            status_feeds.summary_head,
            status_feeds.atom,
            status_feeds.rss,
            status_subscribe.subscribe,
            status_subscribe.confirm_form,
            status_subscribe.confirm,
            status_subscribe.unsubscribe_form,
            status_subscribe.unsubscribe,
            scrape.monitor_metrics,
            scrape.report_metrics,
            create_static_files_router(
                path=DOCS_ASSETS,
                directories=[swagger_ui.static_path],
                name="docs-assets",
                file_system=StaticFileSystem(),
            ),
        ],
        exception_handlers={NotFoundException: pages.public_error_page},
        response_headers=_HEADERS,
        include_in_schema=False,
    )
    return [console, public]


def docs_plugin() -> SwaggerRenderPlugin:
    """Swagger UI from the `openapi-ui-bundles` package, served at `/schema-assets`."""
    return SwaggerRenderPlugin(
        js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>",
    )
