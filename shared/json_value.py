"""A JSON value as a type: what `json.loads` or `msgspec.json.decode` without a type gives, and
what a body built for someone else's JSON API holds.

Where a value is JSON of a shape nobody declared (a third party's answer, a body assembled
from parts), it is `Json` (or `JsonObject`), not `Any`: a reader narrows it (`isinstance`)
before it uses a part, so a shape that is not the one expected is found where it is read.
"""

from typing import TypeAlias

Json: TypeAlias = str | int | float | bool | None | list["Json"] | dict[str, "Json"]
JsonObject: TypeAlias = dict[str, Json]
