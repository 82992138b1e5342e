"""The request types web/'s helpers take, named once.

litestar's `Request` (and `ASGIConnection`) is generic in its user, its auth and its state, and
invariant in each: a helper that serves every request (signed in or not, the API's and the
console's) can only take them as `Any`, and says so here, once. A handler behind the API's auth
guard takes `controller.web.authed_request.AuthedRequest` instead.
"""

from typing import Any, TypeAlias

from litestar import Request
from litestar.connection import ASGIConnection

# Any request: its user, auth and state are what the route's middleware put there.
AnyRequest: TypeAlias = Request[Any, Any, Any]
# Any connection (HTTP or websocket), as the auth middleware sees it before a guard runs.
AnyConnection: TypeAlias = ASGIConnection[Any, Any, Any, Any]
