"""What the operator sets for a side check's own oracle that is unhealthy or unknown (the agents'
resolver's is the oracle rules' own: controller.oracles.rules.fix), one line per side check with
oracles of its own; pure, as the oracle rules that read it."""

from collections.abc import Callable
from typing import Final

from controller.sidechecks.blocklists.rules import oracle_fix as lists_fix

# Each side check's: its oracle's fix, None for an oracle that is not its own.
FIXES: Final[tuple[Callable[[str], str | None], ...]] = (lists_fix,)


def own_fix(oracle: str) -> str | None:
    """The fix of the side check whose oracle `oracle` is (None: no side check's)."""
    return next((said for fix in FIXES if (said := fix(oracle)) is not None), None)
