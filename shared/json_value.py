"""A JSON value as a type: what `json.loads` or `msgspec.json.decode` without a type gives, and
what a body built for someone else's JSON API holds.

Where a value is JSON of a shape nobody declared (a third party's answer, a body assembled
from parts), it is `Json` (or `JsonObject`), not `Any`: a reader narrows it (`isinstance`)
before it uses a part, so a shape that is not the one expected is found where it is read.

A type for the type checker only: its recursion is a forward reference that msgspec and
litestar resolve in the module of the class or handler they read, so it is no field of a
Struct, a dataclass msgspec decodes or a handler's signature.
"""

from typing import TypeAlias

Json: TypeAlias = str | int | float | bool | None | list["Json"] | dict[str, "Json"]
JsonObject: TypeAlias = dict[str, Json]
