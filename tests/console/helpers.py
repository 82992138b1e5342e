"""Talking to the console over real HTTP like a browser does: the session and CSRF cookies sent
back by hand (httpx keeps no `Secure` cookie over plain HTTP), the CSRF token read off the form."""

import re
from dataclasses import dataclass, field

import httpx

_CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


@dataclass
class Browserish:
    """An httpx client with a session token (an API token, as the console's login issues)."""

    http: httpx.AsyncClient
    session: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def _headers(self) -> dict[str, str]:
        jar = dict(self.cookies)
        if self.session is not None:
            jar["mp_session"] = self.session
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}

    def _keep(self, r: httpx.Response) -> None:
        for header in r.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]

    async def get(self, path: str) -> httpx.Response:
        r = await self.http.get(path, headers=self._headers())
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
        r = await self.http.post(path, data=form, headers=self._headers())
        self._keep(r)
        return r
