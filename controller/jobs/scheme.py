"""Which scheme the scheduled rounds' job ids are made under (controller/jobs/rules.py): a
function of the round and one database-wide fact, so every process names a round alike.

The fact is `seeded_from` (table `job_id_scheme`, migration 0123): a round scheduled at or after
it gets a seeded id, one before it (or any round while it is NULL) a keyed id (`seeded_round`).
Every process reads it at start and every LOOK_EVERY_S; a scheduler, a replica claiming a round
again and the alerter writing `expired` rows all apply it to the round's scheduled time (which
the scheduler set, so no process's clock enters the answer).

Who sets it: an ingester of an older release would move aside a result whose id is seeded (it
cannot recompute it), so seeded ids start only once every live controller accepts them. A
controller says it does in the name of its PostgreSQL sessions (`application_name`,
`session_name`), which every controller, of this release or an older one, gives its sessions
and PostgreSQL shows to every session of the database (`pg_stat_activity`); a controller with
JOB_IDS_SEEDED=false names them without the mark. Each controller's watch (`SeededGate.look`)
asks to set `seeded_from` to the database's now plus LEAD_S once every look for OPEN_AFTER_S
saw only marked controllers (an older one's sessions come back within it after a database
restart), and to clear it at the first look that sees an unmarked one. LEAD_S is longer than a
look's period, so every process has read the new value before the first round it applies to.
Pure, no I/O; the looks and the row are `scheme_store`'s.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Final, Literal

CONTROLLER_PREFIX: Final = "mailprobe controller"
# What a controller that accepts seeded ids adds to its sessions' name (PostgreSQL keeps 63
# bytes of it: "mailprobe controller alerter,api,ingester,scheduler ids3" is 56). The mark also
# says that the controller keeps due times in `monitor_due` alone once `seeded_from` is set
# (migration 0128), so a release that still reads `monitors.next_due_at` (its mark was `ids2`)
# counts as unmarked: while one runs, `seeded_from` is NULL and due times are kept in both.
SEEDED_MARK: Final = "ids3"
LOOK_EVERY_S: Final = 15.0
OPEN_AFTER_S: Final = 300.0
# How long after the watch sets `seeded_from` the first round it applies to is scheduled: more
# than a look's period plus how far a scheduler's clock may be ahead of the database's.
LEAD_S: Final = 60.0
# What a look asks of `seeded_from`: set it (when NULL) or clear it; None: leave it.
Move = Literal["open", "close"] | None


def session_name(roles: Iterable[str], seeded: bool = True) -> str:
    """The name of a controller's PostgreSQL sessions: `mailprobe controller`, its roles and,
    when it lets rounds be seeded (JOB_IDS_SEEDED), SEEDED_MARK."""
    name = f"{CONTROLLER_PREFIX} {','.join(sorted(roles))}"
    return f"{name} {SEEDED_MARK}" if seeded else name


def seeded_round(seeded_from: datetime | None, scheduled_at: datetime) -> bool:
    """Whether the scheduled round at `scheduled_at` has a seeded id, given `seeded_from`."""
    return seeded_from is not None and scheduled_at >= seeded_from


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
    """A process's view of the scheme: `seeded_from` as last read (call it for that: `JobIds`
    does, once a round), and the watch's count of how long every look has seen only
    controllers that accept seeded ids (`look`)."""

    def __init__(self, allowed: bool = True, open_after_s: float = OPEN_AFTER_S) -> None:
        self.allowed = allowed
        self._open_after_s = open_after_s
        self._since: float | None = None
        self.seeded_from: datetime | None = None

    def look(self, all_accept: bool, now: float) -> Move:
        """Take in one look at `now` (monotonic seconds): "close" when not every controller
        accepts seeded ids (or the setting says never), "open" once all have for OPEN_AFTER_S,
        None while waiting for that."""
        if not (self.allowed and all_accept):
            self._since = None
            return "close"
        if self._since is None:
            self._since = now
        return "open" if now - self._since >= self._open_after_s else None

    def unseen(self) -> None:
        """A look that failed: the controllers were not seen, so OPEN_AFTER_S starts again
        (`seeded_from` stays as last read: every process applies the same value)."""
        self._since = None

    def __call__(self) -> datetime | None:
        return self.seeded_from
