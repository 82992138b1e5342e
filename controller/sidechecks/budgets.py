"""The side checks whose jobs take a budget as admission lets them go, by name (`Budget`):
admission reserves and releases each for the jobs that ask it something, and names none of
them. Apart from the registry so that the registry stays pure (the planner's rules read it);
a budget's rule is its own package's (readiness: `budget`, `budget_store`)."""

from typing import Final

from controller.sidechecks.frame import Budget
from controller.sidechecks.readiness import budget_store as readiness_budget

BUDGETS: Final[dict[str, Budget]] = {
    # each organization's DNS queries per hour and country
    "readiness": readiness_budget.BUDGET,
}
