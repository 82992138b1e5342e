"""The README's generated parts (settings table, result schema) are what the code generates."""

import json
from pathlib import Path

import msgspec

from shared.messages import CheckResult
from shared.settings import table

README = Path(__file__).resolve().parents[2] / "README.md"


def between(text: str, name: str) -> str:
    start = text.index(f"<!-- {name}:start -->\n") + len(f"<!-- {name}:start -->\n")
    return text[start : text.index(f"<!-- {name}:end -->")]


def test_readme_settings_table_matches_code() -> None:
    text = README.read_text()
    assert between(text, "settings").strip() == table(), (
        "run: python -m shared.settings, paste into README"
    )


def test_readme_result_schema_matches_code() -> None:
    block = between(README.read_text(), "result-schema").strip()
    assert block.startswith("```json\n") and block.endswith("\n```"), block[:40]
    documented = json.loads(block.removeprefix("```json\n").removesuffix("\n```"))
    assert documented == msgspec.json.schema(CheckResult), (
        "regenerate the README's result schema with the command printed above it"
    )
