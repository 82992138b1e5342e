"""Which scheme the scheduled rounds' job ids are made under (controller/jobs/rules.py): seeded
only once every live controller accepts seeded ids, so that a rolling upgrade loses no result.

A controller says it accepts them in the name of its PostgreSQL sessions (`application_name`,
`session_name`), which every controller, of this release or an older one, gives its sessions
and PostgreSQL shows to every session of the database (`pg_stat_activity`). An ingester of an
older release would move aside a result whose id is seeded (it cannot recompute it), so while
any session is a controller's without the mark, ids stay keyed. The gate opens only once that
has held for OPEN_AFTER (an older controller's sessions come back within it after a database
restart), and closes at the first look that finds an older controller. Pure, no I/O; the
look is `scheme_store.session_names`.
"""

from collections.abc import Iterable
from typing import Final

CONTROLLER_PREFIX: Final = "mailprobe controller"
# What a controller that accepts seeded ids adds to its sessions' name (PostgreSQL keeps 63
# bytes of it: "mailprobe controller alerter,api,ingester,scheduler ids2" is 56).
SEEDED_MARK: Final = "ids2"
LOOK_EVERY_S: Final = 15.0
OPEN_AFTER_S: Final = 300.0


def session_name(roles: Iterable[str]) -> str:
    """The name of a controller's PostgreSQL sessions: `mailprobe controller`, its roles and
    SEEDED_MARK."""
    return f"{CONTROLLER_PREFIX} {','.join(sorted(roles))} {SEEDED_MARK}"


def all_accept_seeded(names: Iterable[str], own: str) -> bool:
    """Whether every controller among the sessions `names` accepts seeded ids, given `own`,
    the name of the session that looks: False when that is not a controller's name with the
    mark (a URL naming the sessions hides which controllers are which), or when any session
    named as a controller lacks it."""
    if not _marked(own):
        return False
    return all(_marked(n) for n in names if n.startswith(CONTROLLER_PREFIX))


def _marked(name: str) -> bool:
    return name.startswith(CONTROLLER_PREFIX + " ") and name.split(" ")[-1] == SEEDED_MARK


class SeededGate:
    """Seeded ids or not, from the looks (`look`) at the live controllers: open once every look
    for OPEN_AFTER_S said all accept them, closed at the first look that does not (or when the
    setting says never). Call it for the answer: `JobIds` does, at each id."""

    def __init__(self, allowed: bool = True, open_after_s: float = OPEN_AFTER_S) -> None:
        self._allowed = allowed
        self._open_after_s = open_after_s
        self._since: float | None = None
        self._open = False

    def look(self, all_accept: bool, now: float) -> bool:
        """Take in one look at `now` (monotonic seconds); whether the gate is open after it."""
        if not (self._allowed and all_accept):
            self.close()
        else:
            if self._since is None:
                self._since = now
            self._open = now - self._since >= self._open_after_s
        return self._open

    def close(self) -> None:
        """Closed until a look says otherwise for OPEN_AFTER_S again (a look that failed: the
        controllers were not seen)."""
        self._since, self._open = None, False

    def __call__(self) -> bool:
        return self._open
