"""The request a handler behind the API's auth guard takes: its user is the `Principal` signed
in; its auth and state it does not read as typed values."""

from typing import TypeAlias

from litestar import Request
from litestar.datastructures import State

from controller.access.accounts_store import Principal

AuthedRequest: TypeAlias = Request[Principal, object, State]
