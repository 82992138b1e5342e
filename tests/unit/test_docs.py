"""The README's settings table is the one the code generates."""

from pathlib import Path

from shared.settings import table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_matches_code() -> None:
    text = README.read_text()
    start = text.index("<!-- settings:start -->\n") + len("<!-- settings:start -->\n")
    end = text.index("<!-- settings:end -->")
    assert text[start:end].strip() == table(), "run: python -m shared.settings, paste into README"
