"""Pure rules of a monitor write: which changes put the monitor on a new grid, which change
nothing, and which of a surface's field names a budget refusal may cite.

No I/O: rows and changes in, decisions out (`controller.monitors.writes` applies them).
"""

from collections.abc import Mapping

# A monitor's columns as stored (`controller.monitors.store.stored_values`), or a table test's.
Row = Mapping[str, object]

# A change of these sends the monitor back to the scheduler to be put on its new grid.
REGRID_COLUMNS = frozenset({"check_interval", "status"})


def with_due_reset(changes: Mapping[str, object]) -> dict[str, object]:
    """`changes`, plus `next_due_at` cleared when they set the interval or the status (the
    scheduler then plans the monitor as new: its first round at once or on its new grid)."""
    out = dict(changes)
    if REGRID_COLUMNS & out.keys():
        out["next_due_at"] = None
    return out


def changes_nothing(row: Row, changes: Mapping[str, object]) -> bool:
    """Whether writing `changes` onto `row` would leave every column as it is (a PATCH that
    restates stored values, a secret sent again as stored): such a write is skipped, so
    `updated_at` and the due time stay."""
    return all(row[column] == value for column, value in changes.items())


def creating(budget: Mapping[str, str]) -> dict[str, str]:
    """A surface's budget field names (column → field) as a create cites them: a new
    monitor's status adds no checks over what it had before, it had none."""
    return {column: name for column, name in budget.items() if column != "status"}
