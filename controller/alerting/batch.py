"""Which way a leased monitor is evaluated in a batch pass (controller.alerting.evaluator):
the rule, pure.

A **routine** monitor is judged with the batch's reads and written with the batch's few
statements: its evaluation would write nothing but its state, its lease's release and its
posture cursor. Everything else takes the evaluator's full path (`Evaluator.evaluate`), in a
savepoint of the batch's transaction, except a monitor that stores `expired` results (or creates
its state row): it leaves the batch (`alone`), since an `expired` row can wait on an ingester
storing the same job's real result while that ingester waits on the queue rows the batch
releases. The evaluator stores those results after the batch has committed, for all such
monitors in one transaction that holds no queue row, and passes them through a batch again.
"""

from collections.abc import Mapping, Sequence
from typing import Literal

from controller.alerting.rules import AlertState, Effect
from controller.alerting.state_store import Inputs
from controller.logins.backoff import Backoff
from controller.monitors.store import MonitorConfigError
from controller.posture.observe import CursorMove
from controller.posture.rules import Key

Path = Literal["batch", "savepoint", "alone"]


def judged_in_batch(got: Inputs | MonitorConfigError | None, revised: bool) -> bool:
    """Whether the batch judges the monitor at all: its inputs read (a state row, a config
    that decodes), no revision to replay, nothing more to read (maintenance windows, held
    recoveries, an open incident), not disabled, and judged before (posture starts from the
    alerter's cursor)."""
    if got is None or isinstance(got, MonitorConfigError) or revised:
        return False
    s = got.state
    return not (
        got.windows
        or got.held
        or s.open_incident_id is not None
        or s.last_round_at is None
        or got.watched.monitor.status == "disabled"
    )


def path(
    got: Inputs | MonitorConfigError | None,
    revised: bool,
    *,
    fills: bool = False,
    cut_short: bool = False,
    effects: Sequence[Effect] = (),
    posture: CursorMove | None = None,
) -> Path:
    """`batch` for a routine monitor; `alone` when its evaluation creates its state row or
    stores `expired` results (`fills`); else `savepoint`. `cut_short`: its results read
    reached the limit; `effects`: what `judge` decided; `posture`: its posture pass when that
    is only a cursor move (`cursor_move`), else None."""
    if got is None or fills:
        return "alone"
    if not judged_in_batch(got, revised) or cut_short or effects or posture is None:
        return "savepoint"
    return "batch"


def settled(state: AlertState, backoff: Backoff | None, streaks: Mapping[Key, int]) -> bool:
    """Whether a monitor written by the batch (`batch` path: no effect, no maintenance window,
    no held recovery, no open finding) may leave its next routine rounds to the close of the
    first of them (`alert_queue.settled`): it is up, with no incident open, no login back-off
    and no posture drift being counted, so a round that says what the last one said changes
    nothing anyone is told."""
    return (
        state.state == "up"
        and state.open_incident_id is None
        and backoff is None
        and not any(streaks.values())
    )
