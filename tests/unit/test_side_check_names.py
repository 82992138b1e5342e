"""The frame names no particular side check (issue 81): what a side check needs of the
scheduler, admission, the oracles and the ingester is a capability its registry entry declares
(controller/sidechecks/frame.py) and they iterate, so a side check's name appears in none of
controller/scheduling/, controller/ingest/, controller/oracles/ (as a word, any case, in code
and SQL alike) but where `NAMED` says why, each count pinned: none is left (the world gauges'
listings and reports are each side check's `WorldGauges`, an oracle's fix is in
controller/sidechecks/oracle_fixes.py).
The legacy wire fields of an agent that predates `sideChecks` live in
controller.sidechecks.legacy."""

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Final

import pytest

from controller.jobs.rules import JobIds
from controller.scheduling.plan import RoundPlanner
from controller.secrets.box import SecretBox, generate_key
from controller.secrets.seal_keys import CountryKeys
from controller.sidechecks.blocklists import ANSWERS
from controller.sidechecks.frame import PlanState
from controller.sidechecks.registry import SIDE_CHECKS
from shared.guards import BrokenInvariant
from testkit.scheduling import Answered

ROOT = Path(__file__).resolve().parents[2]
SCOPE: Final = ("controller/scheduling", "controller/ingest", "controller/oracles")

NAMED: Final[dict[tuple[str, str], int]] = {}


def names_in(root: Path, names: list[str]) -> Counter[tuple[str, str]]:
    """(file, side check name) → the lines of the scope's .py and .sql files under `root` that
    name it as a word."""
    words = {n: re.compile(rf"\b{re.escape(n)}\b", re.IGNORECASE) for n in names}
    found: Counter[tuple[str, str]] = Counter()
    for folder in SCOPE:
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".py", ".sql"):
                continue
            for line in path.read_text().splitlines():
                for name, word in words.items():
                    if word.search(line):
                        found[(path.relative_to(root).as_posix(), name)] += 1
    return found


def beyond(found: Counter[tuple[str, str]]) -> dict[tuple[str, str], int]:
    return {key: n for key, n in found.items() if n > NAMED.get(key, 0)}


def test_the_scheduler_admission_oracles_and_ingester_name_no_side_check() -> None:
    found = names_in(ROOT, sorted(SIDE_CHECKS))
    assert beyond(found) == {}, "a side check named outside the registry: declare a capability"


def test_a_planted_name_is_found(tmp_path: Path) -> None:
    """The scan fails on a side check's name planted in the scope, in code or SQL."""
    (tmp_path / "controller" / "scheduling").mkdir(parents=True)
    (tmp_path / "controller" / "ingest").mkdir(parents=True)
    (tmp_path / "controller" / "oracles").mkdir(parents=True)
    (tmp_path / "controller/scheduling/admission.py").write_text(
        "from controller.sidechecks.Readiness import budget_store\n"
    )
    (tmp_path / "controller/ingest/x.sql").write_text("SELECT 1 FROM side_relay r -- relay\n")
    assert beyond(names_in(tmp_path, sorted(SIDE_CHECKS))) == {
        ("controller/scheduling/admission.py", "readiness"): 1,
        ("controller/ingest/x.sql", "relay"): 1,
    }


def test_a_planning_state_no_side_check_declares_is_refused(tmp_path: Path) -> None:
    """The scheduler holds only what a registered side check plans with (`plans`), each value
    bound by its key (`PlanState.held`, of the key's type), and a key names its own check."""
    box = SecretBox(generate_key())
    keys = CountryKeys(str(tmp_path))
    RoundPlanner(JobIds.from_box(box), box, keys, held=[ANSWERS.held(Answered((), 3600))])
    stray: PlanState[int] = PlanState("readiness")
    with pytest.raises(BrokenInvariant, match="readiness"):
        RoundPlanner(JobIds.from_box(box), box, keys, held=[stray.held(1)])
    with pytest.raises(ValueError, match="plans with the state of blocklists"):
        dataclasses.replace(SIDE_CHECKS["readiness"], plans=ANSWERS)
