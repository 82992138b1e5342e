"""The OpenAPI document made to say what the API does: its error bodies, its error statuses,
bearer authentication and UUID path ids.

Litestar documents every error as its own default body (`status_code`, `detail`, `extra`) and
only 400; the API answers `errors.ErrorBody` (AlertSite's `{"errors": [...]}` under `/api/v3`)
with 401, 403, 404, 409, 413 and 429 too. `document` rewrites the generated document once, at
startup, before the first request renders it.
"""

from typing import cast

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
    SecurityScheme,
)

from controller.api.errors import ALERTSITE_PREFIX

BEARER = "bearer"
# Paths anyone may call (the auth middleware's exclusions).
PUBLIC = ("/health", "/ready", "/metrics", "/api/auth/login", "/api/v3/access-tokens")
# Path parameters the API parses as UUIDs (a malformed one is a 400 naming it).
UUID_PARAMS = frozenset(
    {
        "smtpMonitorPublicId",
        "imapPopMonitorPublicId",
        "roundtripMonitorPublicId",
        "userPublicId",
        "windowId",
    }
)
ERROR_STATUSES = {
    "400": "the request is malformed or a field is invalid (`fields` names it)",
    "401": "no token, or an expired or revoked one",
    "403": "the token's role may not do this",
    "404": "no such resource in the caller's organization",
    "409": "the request conflicts with the resource's state",
    "413": "the request body is larger than the API accepts",
    "429": "too many requests: wait `Retry-After` seconds",
}

_ERROR_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["statusCode", "code", "message", "fields"],
    additional_properties=False,
    properties={
        "statusCode": Schema(type=OpenAPIType.INTEGER),
        "code": Schema(type=OpenAPIType.STRING, description="stable, machine-readable"),
        "message": Schema(type=OpenAPIType.STRING, description="for a person"),
        "fields": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING),
            description="the input at fault, as dotted paths (`smtpConfig.auth.user`)",
        ),
    },
)
_ALERTSITE_ERRORS = Schema(
    type=OpenAPIType.OBJECT,
    required=["errors"],
    properties={
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["code", "message"],
                properties={
                    "code": Schema(type=OpenAPIType.INTEGER),
                    "message": Schema(type=OpenAPIType.STRING),
                },
            ),
        )
    },
)


def _closed_structs() -> list[type[msgspec.Struct]]:
    """The request Structs: those that refuse unknown keys (a 400 naming the key)."""
    found: list[type[msgspec.Struct]] = []
    todo: list[type[msgspec.Struct]] = [msgspec.Struct]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__struct_config__.forbid_unknown_fields:
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def request_schemas() -> dict[str, dict[str, object]]:
    """msgspec's own JSON Schema of the request Structs: every bound (`minimum: 0` too, which
    Litestar drops as falsy), `additionalProperties: false`, optional keys as not required."""
    _, components = msgspec.json.schema_components(
        _closed_structs(), ref_template="#/components/schemas/{name}"
    )
    return components


def document(app: Litestar) -> None:
    """Rewrite `app`'s OpenAPI document in place (an `on_startup` hook)."""
    rewrite(app.openapi_schema)


def rewrite(spec: OpenAPI) -> None:
    components = spec.components if isinstance(spec.components, Components) else Components()
    spec.components = components
    schemas = components.schemas if components.schemas is not None else {}
    schemas.update(ErrorBody=_ERROR_BODY, AlertSiteErrors=_ALERTSITE_ERRORS)
    components.schemas = schemas
    for name, schema in request_schemas().items():
        if name in schemas:  # Litestar names components by class, as msgspec does
            schemas[name] = cast(Schema, schema)  # a dict renders as itself
    components.security_schemes = {
        BEARER: SecurityScheme(
            type="http",
            scheme="bearer",
            description="a token from POST /api/auth/login (or POST /api/v3/access-tokens)",
        )
    }
    spec.security = [{BEARER: []}]
    for path, item in (spec.paths or {}).items():
        for operation in (item.get, item.put, item.post, item.patch, item.delete):
            if operation is not None:
                _operation(path, operation)


def _operation(path: str, operation: Operation) -> None:
    body = "AlertSiteErrors" if path.startswith(ALERTSITE_PREFIX) else "ErrorBody"
    content = {
        "application/json": OpenAPIMediaType(schema=Reference(f"#/components/schemas/{body}"))
    }
    public = path in PUBLIC or path.startswith("/schema")
    if public:
        operation.security = []
    statuses = {"400", "429"}
    if not public:
        # 404 also without an id in the path: a body can name another organization's customer
        statuses |= {"401", "403", "404"}
    if operation.request_body is not None:
        statuses.add("413")
    if path.endswith("/trigger-check") or path.startswith("/api/users"):
        statuses.add("409")
    responses = operation.responses if operation.responses is not None else {}
    for status in sorted(statuses):
        responses[status] = OpenAPIResponse(description=ERROR_STATUSES[status], content=content)
    operation.responses = responses
    params = [p for p in operation.parameters or [] if isinstance(p, Parameter)]
    for parameter in params:
        if parameter.name in UUID_PARAMS and isinstance(parameter.schema, Schema):
            parameter.schema.format = OpenAPIFormat.UUID
