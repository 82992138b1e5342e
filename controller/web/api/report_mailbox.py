"""The organization's report mailbox (`/api/report-mailbox`): where reporters mail TLS-RPT and
DMARC aggregate reports, read every REPORTS_MAILBOX_INTERVAL_SECONDS by the alerter role
(controller.reports.reading) over IMAP or POP3 (`protocol`), with implicit TLS or STARTTLS
(`security`; the port defaults to the pair's: 993, 143, 995, 110). POP3 reads the one maildrop
(`folder` INBOX) and deletes what it read instead of moving it to `doneFolder`.

Its host is judged at `PUT` by the channels' rules (controller.reports.mailbox_host): a
mailbox at an address that is not public is a 400 naming `host`, unless
REPORTS_MAILBOX_ALLOW_PRIVATE. Every member reads it, its secrets shown as the mask, with how
its last read went; owners and admins set (`PUT`, the whole mailbox) and remove it. Its login
is a `password` or an `oauth2` grant (as a monitor's, XOAUTH2), sealed at rest. The mask keeps
the stored secret only while the server, port, user and CA (and the grant's endpoint, client,
scopes, subject) stay as they were (controller.reports.binding): otherwise a 400
`secret_required` names the secret to send.
A changed protocol or security keeps it (a secret never goes without TLS to a certificate of
that host), but forgets a grant's cached token, whose scopes may be the protocol's.
"""

import ssl
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, put
from litestar.params import JSONBody
from msgspec import Meta

from controller.monitors import oauth2_grants as grants
from controller.monitors import validation
from controller.monitors.errors import Refused
from controller.reports import binding, mailbox_host
from controller.reports import mailbox_store as db
from controller.secrets.box import SecretBox
from controller.web.api import guards
from controller.web.api.errors import ApiError, api_error, bad_request, not_found
from controller.web.api.monitor_rules import strict_body
from controller.web.api.monitor_schemas import MASK
from controller.web.authed_request import AuthedRequest
from controller.web.services import BoxDep, ClockDep, OAuth2SettingsDep, PoolDep, ReportsSettingsDep
from shared.guards import BrokenInvariant
from shared.timefmt import iso_ms

Folder = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f\"\\]+$")]
User = Annotated[str, Meta(min_length=1, max_length=320, pattern=r"^[^\x00-\x1f\x7f]+$")]
DEFAULT_PORTS = {
    ("imap", "tls"): 993,
    ("imap", "starttls"): 143,
    ("pop3", "tls"): 995,
    ("pop3", "starttls"): 110,
}
GRANT_SECRETS = dict(
    zip(grants.SECRET_KEYS, ("client_secret", "refresh_token", "private_key"), strict=True)
)


class ReportMailbox(msgspec.Struct, rename="camel"):
    """The mailbox as configured (secrets as the mask) and how its last read went."""

    host: str
    port: int
    protocol: str  # imap or pop3
    security: str  # tls (implicit) or starttls (POP3: STLS)
    user: str
    password: str | None  # the mask when a password is stored
    oauth2: dict[str, Any] | None  # the grant, its secrets as the mask
    ca_pem: str | None
    folder: str
    done_folder: str  # where each message read is moved (IMAP; POP3 deletes it)
    enabled: bool
    next_read_at: str | None
    last_read_at: str | None
    last_ok_at: str | None  # the last read that succeeded
    last_error: str | None  # why the last read failed; null when it succeeded
    last_messages: int | None
    last_stored: int | None
    last_rejected: int | None


class ReportMailboxIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """`password` or `oauth2` (a grant as a monitor's login takes it; XOAUTH2); the mask keeps
    the stored one. `caPem`: a private CA (PEM) the server's certificate must chain to.
    `port`: by default `protocol` and `security`'s (993, 143, 995, 110)."""

    host: Annotated[str, Meta(min_length=1, max_length=253)]
    user: User
    protocol: Literal["imap", "pop3"] = "imap"
    security: Literal["tls", "starttls"] = "tls"
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    password: Annotated[str, Meta(max_length=1024)] | None = None
    oauth2: dict[str, Any] | None = None
    ca_pem: Annotated[str, Meta(max_length=65536)] | None = None
    folder: Folder = "INBOX"
    done_folder: Folder = "mailprobe-read"
    enabled: bool = True


def _when(at: datetime | None) -> str | None:
    return None if at is None else iso_ms(at)


def _masked(grant: dict[str, Any] | None) -> dict[str, Any] | None:
    if grant is None:
        return None
    return {k: (MASK if k in GRANT_SECRETS and v else v) for k, v in grant.items()}


def _out(s: db.StoredMailbox) -> ReportMailbox:
    return ReportMailbox(
        host=s.host,
        port=s.port,
        protocol=s.protocol,
        security=s.security,
        user=s.user,
        password=MASK if s.password else None,
        oauth2=_masked(s.oauth2),
        ca_pem=s.ca_pem,
        folder=s.folder,
        done_folder=s.done_folder,
        enabled=s.enabled,
        next_read_at=_when(s.next_read_at) if s.enabled else None,
        last_read_at=_when(s.last_read_at),
        last_ok_at=_when(s.last_ok_at),
        last_error=s.last_error,
        last_messages=s.last_messages,
        last_stored=s.last_stored,
        last_rejected=s.last_rejected,
    )


def _ca(pem: str | None) -> str | None:
    if not pem:
        return None
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError):
        raise bad_request("caPem", "caPem is not a PEM CA certificate") from None
    return pem


def _bound(values: ReportMailboxIn | db.StoredMailbox, oauth2: Any) -> dict[str, Any]:
    return {
        "host": values.host,
        "port": values.port,
        "user": values.user,
        "caPem": values.ca_pem or None,
        "oauth2": oauth2,
    }


class _Login(msgspec.Struct):
    password: str | None  # sealed
    oauth2: dict[str, Any] | None  # secrets sealed
    kept: str | None  # the secret kept by the mask, as the request names it


def _password(body: ReportMailboxIn, was: db.StoredMailbox | None, box: SecretBox) -> _Login:
    if body.password is None or body.password == MASK:
        if was is None or was.password is None:
            raise bad_request("password", "password (or oauth2) is required: no password is stored")
        return _Login(was.password, None, "password")
    if not body.password:
        raise bad_request("password", "password must not be empty")
    return _Login(box.seal(body.password), None, None)


def _grant(
    raw: dict[str, Any], was: db.StoredMailbox | None, box: SecretBox, hosts: list[str]
) -> _Login:
    try:
        grant = grants.checked(raw, hosts)
    except grants.GrantProblem as exc:
        raise bad_request(f"oauth2.{exc.field}", f"oauth2.{exc}") from None
    if grant.mechanism != "XOAUTH2":
        raise bad_request("oauth2.mechanism", "oauth2.mechanism: report mailboxes take XOAUTH2")
    stored = (was.oauth2 or {}) if was is not None else {}
    kept = None
    out = grants.as_stored(grant)
    for key in GRANT_SECRETS:
        value = out.get(key)
        if not value:
            continue
        if value == MASK:
            if not stored.get(key):
                raise bad_request(
                    f"oauth2.{key}",
                    f"oauth2.{key}: {MASK!r} stands for a stored secret, and none is stored",
                )
            out[key] = stored[key]
            kept = kept or f"oauth2.{key}"
        else:
            out[key] = box.seal(value)
    return _Login(None, out, kept)


def _secret_required(field: str, moved: list[str]) -> ApiError:
    return ApiError(
        400,
        f"{field} must be sent again to change {', '.join(moved)}: a stored secret is only sent"
        f" to the server, port, user and CA it was given with, and the mask {MASK!r} keeps it"
        " only while none of those change",
        code="secret_required",
        fields=[field],
    )


class ReportMailboxController(Controller):
    path = "/api/report-mailbox"
    tags = ["reports"]

    @get("", summary="The organization's report mailbox, secrets masked, and its last read")
    async def show(self, request: AuthedRequest, pool: PoolDep) -> ReportMailbox:
        async with pool.acquire() as conn:
            found = await db.get(conn, request.user.organization_id)
        if found is None:
            raise not_found("No report mailbox is configured")
        return _out(found)

    @put("", summary="Set the report mailbox (owners, admins); it is read at once")
    async def set_mailbox(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        box: BoxDep,
        oauth2_settings: OAuth2SettingsDep,
        reports_settings: ReportsSettingsDep,
        clock: ClockDep,
        data: JSONBody[ReportMailboxIn],
    ) -> ReportMailbox:
        guards.requires_admin(request.user)
        body = await strict_body(request, data)
        try:
            host = validation.hostname(body.host, "host")
        except Refused as exc:
            raise api_error(exc) from None
        port = body.port or DEFAULT_PORTS[(body.protocol, body.security)]
        allow = reports_settings.reports_mailbox_allow_private
        if why := await mailbox_host.problem(host, port, allow_private=allow):
            raise bad_request("host", f"host {why}")
        body = msgspec.structs.replace(body, host=host, port=port, ca_pem=_ca(body.ca_pem))
        if body.protocol == "pop3" and body.folder != "INBOX":
            raise bad_request("folder", "folder: POP3 reads the one maildrop, INBOX")
        if body.password is not None and body.oauth2 is not None:
            raise ApiError(
                400,
                "password and oauth2: give one or the other",
                code="invalid_field",
                fields=["password", "oauth2"],
            )
        org = request.user.organization_id
        async with pool.acquire() as conn, conn.transaction():
            was = await db.get(conn, org)
            if body.oauth2 is not None:
                login = _grant(body.oauth2, was, box, oauth2_settings.token_hosts)
            else:
                login = _password(body, was, box)
            if login.kept is not None and was is not None:
                moved = binding.moved(_bound(was, was.oauth2), _bound(body, login.oauth2))
                if moved:
                    raise _secret_required(login.kept, moved)
            stored = db.StoredMailbox(
                organization_id=org,
                host=host,
                port=port,
                user=body.user,
                password=login.password,
                oauth2=login.oauth2,
                ca_pem=body.ca_pem,
                folder=body.folder,
                done_folder=body.done_folder,
                enabled=body.enabled,
                protocol=body.protocol,
                security=body.security,
            )
            # A token's scopes may be its protocol's (Microsoft's delegated ones are).
            changed = was is None or (was.oauth2, was.protocol) != (login.oauth2, body.protocol)
            await db.save(conn, stored, grant_changed=changed, now=clock.now())
            saved = await db.get(conn, org)
        if saved is None:
            raise BrokenInvariant(
                "report_mailbox.ReportMailboxController.set_mailbox: saved is unset"
            )
        return _out(saved)

    @delete("", summary="Remove the report mailbox (owners, admins)", status_code=204)
    async def remove(self, request: AuthedRequest, pool: PoolDep) -> None:
        guards.requires_admin(request.user)
        async with pool.acquire() as conn:
            if not await db.delete(conn, request.user.organization_id):
                raise not_found("No report mailbox is configured")
