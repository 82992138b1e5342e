"""Rewrites the names of what moved to testkit/ (and tests/unit/probers to tests/probers) in the
repository's Python, Markdown and Makefile text: for a branch begun before the move, run once
after merging it (`python tools/testkit_paths.py`), then `make lint` and
tests/unit/test_testkit_layers.py say what is left. Prints each file it changed. The history
(docs/history/, bench/results/) keeps the names of its time."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGNS = [
    "soak",
    "soak_rig",
    "soak_figures",
    "ha_soak",
    "ha_rig",
    "notice_sink",
    "notice_failover",
    "verdicts",
    "verdict_api",
    "verdict_history",
    "verdict_server",
    "verdict_truth",
    "saturation",
    "scale",
]
OAUTH2 = "dovecot|token_endpoint|issuer|postfix"
KEPT = (
    "docs/history/",
    "bench/results/",
    "tools/testkit_paths.py",
    "tests/unit/test_testkit_layers.py",
)
MOVES = [
    (r"\btests\.peers\b", "testkit.peers"),
    (r"\btests/peers\b", "testkit/peers"),
    (r"\btests\.unit\.probers\b", "tests.probers"),
    (r"\btests/unit/probers\b", "tests/probers"),
    (r"\btests\.(netns|sealing|serving)\b", r"testkit.\1"),
    (r"\btests/(netns|sealing|serving)\.py\b", r"testkit/\1.py"),
    (r"from tests import netns\b", "from testkit import netns"),
    (rf"\btests\.oauth2\.({OAUTH2})\b", r"testkit.oauth2.\1"),
    (rf"\btests/oauth2/({OAUTH2})\.py\b", r"testkit/oauth2/\1.py"),
    (r"from tests\.oauth2 import ", "from testkit.oauth2 import "),
    (r"\btests\.ha\.postgres\b", "testkit.postgres"),
    (r"\btests/ha/postgres\.py\b", "testkit/postgres.py"),
    (r"from tests\.ha import postgres\b", "from testkit import postgres"),
    (r"\btests\.alerting\.(peers|receivers)\b", r"testkit.alerting.\1"),
    (r"\btests/alerting/(peers|receivers)\.py\b", r"testkit/alerting/\1.py"),
    (r"\bbench\.(common|smtp_target|smtp_responder)\b", r"testkit.\1"),
    (r"\bbench/(common|smtp_target|smtp_responder)\.py\b", r"testkit/\1.py"),
    (r"\bbench\.({})\b".format("|".join(CAMPAIGNS)), r"testkit.campaigns.\1"),
    (r"\bbench/({})\.py\b".format("|".join(CAMPAIGNS)), r"testkit/campaigns/\1.py"),
]


def rewritten(text: str) -> str:
    for pattern, replacement in MOVES:
        text = re.sub(pattern, replacement, text)
    return text


def main() -> int:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        path = ROOT / name
        if name.startswith(KEPT) or not (path.suffix in (".py", ".md") or name == "Makefile"):
            continue
        text = path.read_text()
        if (new := rewritten(text)) != text:
            path.write_text(new)
            print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
