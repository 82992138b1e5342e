"""The alerter is three parts and a worker (docs/architecture.md, "Alert"), as the scheduler is:
the evaluator, the teller and the event publisher each take a handful of collaborators (before
the keyword-only settings values), know nothing of each other (the evaluator's effects tell
through the teller they are given), and meet only in the worker, which takes the three. Read
from the sources (an AST scan, no import runs)."""

from pathlib import Path

from tests.unit.test_scheduler_parts import HANDFUL, collaborators, imported

ROOT = Path(__file__).resolve().parents[2]
ALERTING = ROOT / "controller/alerting"
PARTS = {"evaluator": "Evaluator", "telling": "Teller", "event_publisher": "EventPublisher"}
# What the evaluator is given to judge with: which rounds are ready, and the effects' writer.
HELPERS = {"ready_rounds": "ReadyRounds", "effects": "Effects"}
WORKER = ("alerter", "Alerter")


def alerting_imports(source: str) -> set[str]:
    return imported(source, "controller.alerting")


def test_each_part_takes_a_handful_and_none_knows_another() -> None:
    for module, cls in {**PARTS, **HELPERS}.items():
        source = (ALERTING / f"{module}.py").read_text()
        taken = collaborators(source, cls)
        assert 1 <= len(taken) <= HANDFUL, (cls, taken)
        others = {*PARTS, WORKER[0]} - {module}
        if module == "effects":  # the effects' notices go through the teller they are given
            others -= {"telling"}
        assert not alerting_imports(source) & others, module


def test_the_worker_takes_the_three_parts() -> None:
    source = (ALERTING / f"{WORKER[0]}.py").read_text()
    assert collaborators(source, WORKER[1]) == ["evaluator", "teller", "events"]
    assert set(PARTS) <= alerting_imports(source)
