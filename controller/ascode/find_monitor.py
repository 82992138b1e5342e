"""Which monitor a name on the command line means (`tail --monitor NAME`), asked of the API
with the caller's token (MAILPROBE_TOKEN), so a name finds only the monitors that token may
read.

A name is matched exactly among the monitors of every kind, else without regard to case; more
than one match is refused with each candidate listed (its public id, type, host and customer),
as a name is unique only within a customer. `name_of` is the other way: the name `tail` prints
beside a result's monitor id."""

from dataclasses import dataclass

import httpx

from controller.monitors.kinds import KINDS

PER_PAGE = 200


class NotFound(Exception):
    """No monitor, or more than one, has the name; the text says which and lists them."""


@dataclass(frozen=True)
class Candidate:
    public_id: str
    name: str
    type: str
    hostname: str
    customer_id: int

    def describe(self) -> str:
        return (
            f"{self.public_id}  {self.type:<9} {self.name!r} on {self.hostname}"
            f" (customer {self.customer_id})"
        )


async def _named_like(client: httpx.AsyncClient, name: str) -> list[Candidate]:
    """Every monitor whose name or host contains `name` (the API's `search`), every kind."""
    found: list[Candidate] = []
    for kind in KINDS:
        page = 1
        while True:
            params: dict[str, str | int] = {"search": name, "page": page, "perPage": PER_PAGE}
            r = await client.get(kind.api_path, params=params)
            if r.status_code != 200:
                raise NotFound(f"listing {kind.api_path}: HTTP {r.status_code} {r.text[:200]}")
            body = r.json()
            for item in body["items"]:
                found.append(
                    Candidate(
                        str(item["publicId"]),
                        str(item["name"]),
                        str((item.get("config") or {}).get("protocol") or kind.types[0]),
                        str(item["hostname"]),
                        int(item["customerId"]),
                    )
                )
            if page * PER_PAGE >= body["total"]:
                break
            page += 1
    return found


async def public_id_of(client: httpx.AsyncClient, name: str) -> str:
    """The public id of the one monitor named `name`; NotFound for none or several."""
    like = await _named_like(client, name)
    matches = [c for c in like if c.name == name] or [
        c for c in like if c.name.casefold() == name.casefold()
    ]
    if len(matches) == 1:
        return matches[0].public_id
    if not matches:
        raise NotFound(f"no monitor is named {name!r} (that this token may read)")
    listed = "\n".join(f"  {c.describe()}" for c in sorted(matches, key=lambda c: c.public_id))
    raise NotFound(
        f"{len(matches)} monitors are named {name!r}; give one's public id to --monitor:\n{listed}"
    )


PATHS_BY_TYPE: dict[str, str] = {t: kind.api_path for kind in KINDS for t in kind.types}
FIRST_LIST = KINDS[0].api_path  # a listing every token may ask


NAME_TIMEOUT_S = 5.0


async def name_of(client: httpx.AsyncClient, monitor_type: str, public_id: str) -> str | None:
    """The name of the monitor `public_id` of stored type `monitor_type` (a result's), or None
    when the token may not read it, it is gone, or the type is unknown."""
    path = PATHS_BY_TYPE.get(monitor_type)
    if path is None:
        return None
    r = await client.get(f"{path}/{public_id}", timeout=NAME_TIMEOUT_S)
    if r.status_code != 200:
        return None
    name = r.json().get("name")
    return name if isinstance(name, str) else None
