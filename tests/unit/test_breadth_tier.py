"""docs/development.md's table of the breadth tier names exactly the files marked `breadth`, so a
reader of it knows what `make test` leaves to `make breadth`."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"^pytestmark = .*pytest\.mark\.breadth\b", re.MULTILINE)


def marked() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").rglob("test_*.py")
        if MARK.search(path.read_text())
    }


def listed(page: str) -> set[str]:
    """The files of the table under `## What \\`make test\\` leaves to \\`make breadth\\``: a cell's
    name without a folder is in the folder of the name before it; a glob is expanded."""
    section = page.partition("leaves to `make breadth`")[2].partition("\n## ")[0]
    names: set[str] = set()
    for row in section.splitlines():
        cells = row.split("|")
        if len(cells) < 4 or not cells[2].strip().startswith("`"):
            continue
        folder = ""
        for name in re.findall(r"`([^`]+)`", cells[2]):
            if "/" in name:
                folder = name.rpartition("/")[0]
            else:
                name = f"{folder}/{name}"
            found = {p.relative_to(ROOT).as_posix() for p in ROOT.glob(name)}
            assert found, f"docs/development.md lists {name}, which is no file"
            names |= found
    return names


def test_the_table_names_every_marked_file_and_no_other() -> None:
    page = (ROOT / "docs" / "development.md").read_text()
    files = marked()
    assert len(files) > 20  # the scan finds the marks
    assert listed(page) == files


def test_the_reading_of_the_table_takes_a_folder_from_the_name_before_it() -> None:
    page = (
        "## What `make test` leaves to `make breadth`\n"
        "| family | files | kept |\n|---|---|---|\n"
        "| a | `tests/api/test_access_matrix.py`, `test_cli.py` | x |\n"
        "## Next\n| b | `tests/api/test_errors.py` | y |\n"
    )
    assert listed(page) == {"tests/api/test_access_matrix.py", "tests/api/test_cli.py"}
