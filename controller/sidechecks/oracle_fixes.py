"""What the operator sets for a side check's own oracle that is unhealthy or unknown (the agents'
resolver's is the oracle rules' own: controller.oracles.rules.fix), one line per side check with
oracles of its own; pure, as the oracle rules that read it."""

from collections.abc import Callable
from typing import Final

from controller.sidechecks.blocklists.rules import oracle_fix as lists_fix

# Each side check's: its oracle's fix.
FIXES: Final[tuple[Callable[[str], str], ...]] = (lists_fix,)


def own_fix(oracle: str) -> str | None:
    """The fix a side check gives for `oracle` (None: no side check has oracles)."""
    return next((fix(oracle) for fix in FIXES), None)
