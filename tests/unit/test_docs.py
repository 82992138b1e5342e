"""The README's generated parts (settings table, result schema) are what the code generates."""

import json
import re
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


SECURITY = README.parent / "SECURITY.md"
# `tests/x.py::test_name`, or `::test_name` for another test of the file named last.
_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)`|`(tests/[\w/]+\.py)`")


def security_references() -> list[tuple[str, str | None]]:
    """(file, test or None) for every test SECURITY.md names, in order."""
    found: list[tuple[str, str | None]] = []
    current = ""
    for match in _TEST_REF.finditer(SECURITY.read_text()):
        path, name, bare = match.groups()
        if bare:
            current = bare
            found.append((bare, None))
            continue
        current = path or current
        assert current, f"::{name} names no file before it"
        found.append((current, name))
    return found


def test_every_test_security_md_names_exists() -> None:
    """SECURITY.md proves each line with a test; a renamed or deleted test must not leave a
    claim without its proof."""
    root = README.parent
    refs = security_references()
    assert len(refs) > 50
    missing = []
    for path, name in refs:
        source = root / path
        if not source.exists():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, missing
