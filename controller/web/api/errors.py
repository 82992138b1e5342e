"""One error shape for every 4xx/5xx: `{statusCode, code, message, fields}`.

`code` is stable and machine-readable, `message` is for a person, `fields` names the input at
fault (dotted paths like `smtpConfig.auth.user`, query parameters by name).

The AlertSite-compatible API (paths under `/api/v3`) answers AlertSite's shape instead,
`{"errors": [{"code": 404, "message": "Record not found"}]}`; `_respond` picks it by path, so
every error (401 from the auth middleware, 400 from body validation, 404 of unknown routes...)
takes the caller's shape.
"""

import re

import msgspec
import structlog
from litestar import MediaType, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from controller.monitors.errors import (
    Conflict,
    Invalid,
    NotAllowed,
    NotFound,
    Refused,
    TooSoon,
    Unavailable,
)
from controller.observability import metrics
from controller.reports.addresses import TLS_PATH
from controller.web.request_types import AnyRequest

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_AT = re.compile(r"^(.*) - at `\$\.?(.*)`$", re.DOTALL)  # msgspec: "Expected ... - at `$.a.b`"


class ErrorBody(msgspec.Struct, rename="camel"):
    status_code: int
    code: str
    message: str
    fields: list[str] = msgspec.field(default_factory=list)


class AlertSiteError(msgspec.Struct):
    code: int
    message: str


class AlertSiteErrors(msgspec.Struct):
    errors: list[AlertSiteError]


ALERTSITE_PREFIX = "/api/v3"


def _alertsite(request: AnyRequest) -> bool:
    path: str = request.scope["path"]
    return path == ALERTSITE_PREFIX or path.startswith(ALERTSITE_PREFIX + "/")


class ApiError(Exception):
    """An error the API answers with; raise it anywhere below a handler."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _HTTP_CODES.get(status, "error")
        self.fields = fields or []
        self.headers = headers or {}  # e.g. `Retry-After` with a 429


def bad_request(field: str, message: str, code: str = "invalid_field") -> ApiError:
    return ApiError(400, message, code=code, fields=[field])


def not_found(what: str = "Not found") -> ApiError:
    return ApiError(404, what, code="not_found")


def forbidden(message: str = "Forbidden") -> ApiError:
    return ApiError(403, message, code="forbidden")


# A refusal of a monitor operation → its HTTP status (the first class it is an instance of).
_REFUSED_STATUS: tuple[tuple[type[Refused], int], ...] = (
    (Invalid, 400),
    (NotAllowed, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooSoon, 429),
    (Unavailable, 503),
)


def api_error(exc: ApiError | Refused) -> ApiError:
    """The API's answer to an error: an `ApiError` as it is; a monitor operation's refusal with
    the status of its class, its code, message and fields, and `Retry-After` when waiting
    helps."""
    if isinstance(exc, ApiError):
        return exc
    status = next((s for cls, s in _REFUSED_STATUS if isinstance(exc, cls)), 400)
    headers = None if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
    return ApiError(status, exc.message, code=exc.code, fields=exc.fields, headers=headers)


def _respond(
    request: AnyRequest,
    status: int,
    code: str,
    message: str,
    fields: list[str],
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody | AlertSiteErrors]:
    body: ErrorBody | AlertSiteErrors
    if _alertsite(request):
        body = AlertSiteErrors([AlertSiteError(code=status, message=message)])
    else:
        body = ErrorBody(status_code=status, code=code, message=message, fields=fields)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def handle_api_error(request: AnyRequest, exc: ApiError) -> Response[ErrorBody | AlertSiteErrors]:
    return _respond(request, exc.status, exc.code, exc.message, exc.fields, exc.headers)


def handle_refused(request: AnyRequest, exc: Refused) -> Response[ErrorBody | AlertSiteErrors]:
    return handle_api_error(request, api_error(exc))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def invalid_customer() -> ApiError:
    return bad_request("customerId", "Invalid Customer identifier", "invalid_customer_id")


def strict_body_error(exc: msgspec.ValidationError) -> ApiError:
    """A msgspec error from re-checking a body strictly → the 400 `handle_validation` gives."""
    text = str(exc)
    m = _AT.match(text)
    message, key = (m.group(1), m.group(2)) if m else (text, "")
    if key == "customerId":
        return invalid_customer()
    return ApiError(
        400,
        f"Invalid request body: {key}: {message}" if key else f"Invalid request body: {message}",
        code="invalid_body",
        fields=[key] if key else [],
    )


def handle_validation(
    request: AnyRequest, exc: ValidationException
) -> Response[ErrorBody | AlertSiteErrors]:
    """Litestar's body/query validation → our shape, naming the fields at fault."""
    fields: list[str] = []
    problems: list[str] = []
    source = exc.extra[0].get("source") if isinstance(exc.extra, list) and exc.extra else None
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key, message = str(item.get("key", "")), str(item.get("message", ""))
        if source == "query":
            key = _camel(key)  # Litestar reports the Python name; callers sent the query name
        if key == "customerId" and message.startswith("Expected"):
            # a bool, float, null, object...: the seeds' error for any bad customer identifier
            return handle_api_error(request, invalid_customer())
        if (m := _MISSING.search(message) or _UNKNOWN.search(message)) is not None:
            key = m.group(1) if key in ("", "data") else f"{key}.{m.group(1)}"
        elif key == "data":
            key = ""
        if message == "'data'":
            message = "a JSON object body is required"
        if key:
            fields.append(key)
        problems.append(f"{key}: {message}" if key else message)
    prefix = "Invalid query parameter" if source == "query" else "Invalid request body"
    text = f"{prefix}: {'; '.join(problems)}" if problems else f"{prefix}: {exc.detail}"
    code = "invalid_query" if source == "query" else "invalid_body"
    return _respond(request, 400, code, text, fields)


def handle_http(request: AnyRequest, exc: HTTPException) -> Response[ErrorBody | AlertSiteErrors]:
    status = exc.status_code
    if status >= 500:
        log.error("http error", status=status, detail=exc.detail)
        return _respond(request, status, "internal", "Internal server error", [])
    detail = exc.detail
    if status == 400 and isinstance(exc.__cause__, SerializationException):
        # msgspec could not decode the body: "JSON is malformed: ...", or cut short ("Input
        # data was truncated"), one error either way
        said = detail.removeprefix("JSON is malformed: ")
        said = said[:1].lower() + said[1:]
        return _respond(
            request, 400, "invalid_json", f"Invalid request body: JSON is malformed: {said}", []
        )
    headers = dict(exc.headers or {})
    if status == 429 and request.scope["path"].startswith(TLS_PATH + "/"):
        metrics.report_taken("unknown", "https", "rate_limited")  # refused before its handler
    if status == 429 and "RateLimit-Reset" in headers:
        # Litestar's rate limiter says when its window resets; clients read Retry-After.
        headers.setdefault("Retry-After", str(max(1, int(headers["RateLimit-Reset"]))))
    return _respond(request, status, _HTTP_CODES.get(status, "error"), detail, [], headers)


def handle_too_deep(
    request: AnyRequest, exc: RecursionError
) -> Response[ErrorBody | AlertSiteErrors]:
    """msgspec gives up on JSON nested deeper than it recurses (e.g. `[[[[...`): a client error."""
    return _respond(
        request, 400, "invalid_json", "Invalid request body: JSON is nested too deeply", []
    )


def handle_not_utf8(
    request: AnyRequest, exc: UnicodeDecodeError
) -> Response[ErrorBody | AlertSiteErrors]:
    """msgspec raises `UnicodeDecodeError` (not its `DecodeError`, which Litestar turns into a
    400) for bytes that are not UTF-8 inside a JSON string: a client error."""
    return _respond(
        request, 400, "invalid_json", "Invalid request body: JSON must be UTF-8 text", []
    )


def handle_unexpected(request: AnyRequest, exc: Exception) -> Response[ErrorBody | AlertSiteErrors]:
    log.exception("unhandled error", error=type(exc).__name__)
    return _respond(
        request, HTTP_500_INTERNAL_SERVER_ERROR, "internal", "Internal server error", []
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: handle_api_error,
    Refused: handle_refused,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    RecursionError: handle_too_deep,
    UnicodeDecodeError: handle_not_utf8,
    Exception: handle_unexpected,
}
