"""Side checks on the wire: the lookups and tests that ride a core check's job (mail DNS,
blocklists, reverse DNS, the open relay test, ...), each by its name.

A job's `sideChecks` maps each side check it asks for to what it asks (that side check's ask
Struct); a result's `sideChecks` maps each side check the agent ran to what it found (its facts
Struct). Both travel as JSON objects under the name, so neither the job nor the result changes
shape when a side check is added, and a reader that does not know a name skips it: an older
agent ignores a newer controller's asks, an older controller a newer agent's facts.

Each side check's wire types are one module of this package, holding its `WIRE`
(`SideCheckWire`): its name, its ask and its facts types. Its agent module
(agent/sidechecks/) and its controller package (controller/sidechecks/) both name it in their
registries. The evolution rules are those of shared/messages.py: a new field of an ask or of
facts always has a default, no field changes type.
"""

from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar, get_args

import msgspec

AskT = TypeVar("AskT", bound=msgspec.Struct)
FactsT = TypeVar("FactsT", bound=msgspec.Struct)

# A job's or a result's side checks as they travel: name → the ask or the facts. Values are
# decoded as JSON values (not typed) so that one side check's bad value spoils only itself:
# `SideCheckWire.ask_of` / `facts_of` type them. (`Any`, not `object`: msgspec hands an
# `object` to a decoder's dec_hook, the job decoder's for secrets.)
SideChecks = dict[str, Any]

NAME_MAX: Final = 32

# Why a side check the job asked for gave no facts (a result's `sideCheckErrors`, by name):
# `timeout`, it ran past the job's side check deadline; `internal`, it raised (the agent's bug);
# `malformed_ask`, the job's ask of it did not fit its ask type. Plain strs on the wire, so a
# newer agent's kind still decodes; a reader keeps only the kinds it knows.
SideCheckErrorKind = Literal["timeout", "internal", "malformed_ask"]
SIDE_CHECK_ERROR_KINDS: Final[frozenset[str]] = frozenset(get_args(SideCheckErrorKind))


class SideCheckError(ValueError):
    """A side check's ask or facts that do not fit its types (the message names it)."""


@dataclass(frozen=True, slots=True)
class SideCheckWire(Generic[AskT, FactsT]):
    """One side check's name and wire types. `name`: lower case, `[a-z_]`, at most NAME_MAX
    characters (it also names the side check's table and metric label)."""

    name: str
    ask: type[AskT]
    facts: type[FactsT]

    def __post_init__(self) -> None:
        if not (0 < len(self.name) <= NAME_MAX and self.name.replace("_", "a").isalpha()):
            raise ValueError(f"a side check's name must be [a-z_]{{1,{NAME_MAX}}}: {self.name!r}")
        if self.name != self.name.lower():
            raise ValueError(f"a side check's name must be lower case: {self.name!r}")

    def ask_of(self, side: SideChecks) -> AskT | None:
        """What `side` (a job's `sideChecks`) asks of this side check; None when it asks
        nothing of it. Raises SideCheckError when the value does not fit its ask type."""
        if self.name not in side or side[self.name] is None:
            return None
        return _convert(self.name, side[self.name], self.ask)

    def facts_of(self, side: SideChecks) -> FactsT | None:
        """The facts of this side check in `side` (a result's `sideChecks`); None without any.
        Raises SideCheckError when the value does not fit its facts type."""
        if self.name not in side or side[self.name] is None:
            return None
        return _convert(self.name, side[self.name], self.facts)


T = TypeVar("T", bound=msgspec.Struct)


def _convert(name: str, value: object, kind: type[T]) -> T:
    """`value` as `kind`: itself when it is one (a Struct the agent put there), else converted
    from its JSON value."""
    if isinstance(value, kind):
        return value
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise SideCheckError(f"side check {name}: {exc}") from None
