"""One page of a list: the generic answer of every paginated GET, named in the OpenAPI document
as each resource's own page (`UserPage`, `SmtpMonitorPage`, …)."""

from typing import Generic, TypeVar

import msgspec
from litestar.params import KwargDefinition

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], rename="camel"):
    """`items` of page `page` (from 1) of `perPage` each; `total` counts all pages' items."""

    items: list[T]
    total: int
    page: int
    per_page: int


def published(name: str) -> KwargDefinition:
    """`Annotated[Page[X], published("XPage")]`: the document names `Page[X]`'s component and
    title `name` (Litestar would name it after the generic, `Page_module_X_`)."""
    return KwargDefinition(schema_component_key=name, schema_extra={"title": name})
