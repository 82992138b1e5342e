"""The side checks' facts of a result as the API shows them: `sideChecks`, one property per
registered side check that rides jobs (controller.sidechecks.registry), its facts as the agent
sent them (its wire type), left out on a round that did not ask it (as on the wire). Generated
from the registry, so a side check added there is in the API and its schema without a line
here."""

from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from controller.sidechecks.registry import WIRED
from shared.guards import BrokenInvariant
from shared.sidechecks import AskT, FactsT, SideCheckError, SideCheckWire

if TYPE_CHECKING:  # a Struct made from the registry as the module loads
    SideChecksOut = msgspec.Struct
else:
    SideChecksOut = msgspec.defstruct(
        "SideChecksOut",
        [
            (name, check.wire.facts | None, None)
            for name, check in WIRED.items()
            if check.wire is not None
        ],
        kw_only=True,
        omit_defaults=True,
        module=__name__,
    )
    SideChecksOut.__doc__ = (
        "Each side check's facts of the result, by its name (docs/api.md, side checks); left"
        " out when the round did not ask it."
    )


def side_checks_out(side: Mapping[str, object]) -> SideChecksOut:
    """The API's `sideChecks` of a stored result's side facts (JSON values by name); a value
    that no longer fits its side check's types (stored by an older version) is left null."""
    values: dict[str, object] = {}
    for name, check in WIRED.items():
        if check.wire is None:
            raise BrokenInvariant("side_checks.side_checks_out: check.wire is unset")
        try:
            values[name] = check.wire.facts_of(dict(side))
        except SideCheckError:
            values[name] = None
    return SideChecksOut(**values)


def facts(side: Mapping[str, object], wire: SideCheckWire[AskT, FactsT]) -> FactsT | None:
    """One side check's facts of `side` as its wire type, or None (also when they no longer
    fit it)."""
    try:
        return wire.facts_of(dict(side))
    except SideCheckError:
        return None
