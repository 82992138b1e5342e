"""The alert rules docs/operating.md gives for an agent's results slow or stalled, as an operator
copies them: Debian's promtool checks them and runs them over series of the agent's hand-off
metrics: a stall (checks waiting for room, steadily or in bursts) and a slow RESULTS each raise
their alert; an agent with no work and a healthy one raise none."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROMTOOL = "/usr/bin/promtool"
OPERATING = Path(__file__).resolve().parents[2] / "docs" / "operating.md"
LABELS = 'country="DE",instance="agent-de:9464",job="mailprobe-agents"'
# Results entering at 400 a second (24,000 a minute), 1 a second, none.
BUSY, TRICKLE, NONE = "0+24000x20", "0+60x20", "0x20"

pytestmark = pytest.mark.skipif(
    shutil.which(PROMTOOL) is None, reason="Debian's prometheus is not installed (make test)"
)


def documented_rules() -> str:
    """The YAML block of the section "An agent's results slow or stalled"."""
    text = OPERATING.read_text()
    section = text[text.index("### An agent's results slow or stalled") :]
    found = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def series(waiting: str, results: str, entered: str) -> list[dict[str, str]]:
    """An agent's hand-off over 20 minutes, a sample a minute."""
    return [
        {"series": f"mailprobe_agent_handoff_waiting{{{LABELS}}}", "values": waiting},
        {"series": f"mailprobe_agent_handoff_results{{{LABELS}}}", "values": results},
        {"series": f"mailprobe_agent_handoff_entered_total{{{LABELS}}}", "values": entered},
    ]


def fired(name: str, severity: str) -> list[dict[str, Any]]:
    labels = {"country": "DE", "instance": "agent-de:9464", "job": "mailprobe-agents"}
    summary = SUMMARIES[name]
    return [{"exp_labels": {**labels, "severity": severity}, "exp_annotations": summary}]


SUMMARIES = {
    "MailprobeResultsStalled": {
        "summary": "RESULTS does not store the results of agent-de:9464 (DE) in time;"
        " its checks wait with their slots"
    },
    "MailprobeResultsSlow": {"summary": "RESULTS stores the results of agent-de:9464 (DE) slowly"},
}


CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]], list[dict[str, Any]]]] = {
    # name: (series, MailprobeResultsStalled at 20 min, MailprobeResultsSlow at 20 min)
    "stalled, checks waiting all along": (
        series("0 0 200x18", "40 40 400x18", "0+24000x2 48000x18"),
        fired("MailprobeResultsStalled", "critical"),
        fired("MailprobeResultsSlow", "warning"),
    ),
    "stalled, waiting checks let in together and waiting again": (
        series("0 0 " + "150 0 " * 9, "40 40 400x18", "0+24000x2 48000+4800x18"),
        fired("MailprobeResultsStalled", "critical"),
        fired("MailprobeResultsSlow", "warning"),
    ),
    "slow, no check waiting yet": (
        series("0x20", "40 40 300x18", TRICKLE),
        [],
        fired("MailprobeResultsSlow", "warning"),
    ),
    "no work": (series("0x20", "0x20", NONE), [], []),
    "healthy and busy, a moment of back-pressure": (series("0x10 3 0x9", "40x20", BUSY), [], []),
}


def test_the_documented_rules_are_valid_and_tell_a_stall_from_no_work(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(documented_rules())
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "rules.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = [
        {
            "name": name,
            "interval": "1m",
            "input_series": given,
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "MailprobeResultsStalled", "exp_alerts": stall},
                {"eval_time": "20m", "alertname": "MailprobeResultsSlow", "exp_alerts": slow},
            ],
        }
        for name, (given, stall, slow) in CASES.items()
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests})
    )
    ran = subprocess.run(
        [PROMTOOL, "test", "rules", str(tmp_path / "tests.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
