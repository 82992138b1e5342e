"""The docs' generated parts (settings table, result schema) are what the code generates, and
their links lead somewhere."""

import argparse
import json
import re
from pathlib import Path

import msgspec
import pytest

from agent.settings import AgentSettings
from agent.sidechecks import SIDE_CHECKS
from controller.cli import parser
from controller.settings import ControllerSettings
from shared.messages import CheckResult
from shared.settings import table

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def between(text: str, name: str) -> str:
    start = text.index(f"<!-- {name}:start -->\n") + len(f"<!-- {name}:start -->\n")
    return text[start : text.index(f"<!-- {name}:end -->")]


def test_settings_tables_match_code() -> None:
    text = (DOCS / "settings.md").read_text()
    assert between(text, "controller-settings").strip() == table(ControllerSettings), (
        "run: python -m controller.settings, paste into docs/settings.md"
    )
    assert between(text, "agent-settings").strip() == table(AgentSettings), (
        "run: python -m agent.settings, paste into docs/settings.md"
    )


def test_result_schema_matches_code() -> None:
    block = between((DOCS / "stream.md").read_text(), "result-schema").strip()
    assert block.startswith("```json\n") and block.endswith("\n```"), block[:40]
    documented = json.loads(block.removeprefix("```json\n").removesuffix("\n```"))
    assert documented == msgspec.json.schema(CheckResult), (
        "regenerate docs/stream.md's result schema with the command printed above it"
    )


SECURITY = ROOT / "SECURITY.md"
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
    root = ROOT
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


README_MAX_LINES = 300
# The files a reader reaches from the README; each link in them must lead somewhere.
LINKED_DOCS = [README, ROOT / "SECURITY.md", ROOT / "CHANGELOG.md", ROOT / "deploy/README.md"]
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+?)\s*$", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        base = slug(heading)
        name, n = base, 0
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in _LINK.findall(_FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return broken


def test_slug_follows_githubs_anchor_rules() -> None:
    for heading, anchor in [
        ("Watch your own server in five minutes", "watch-your-own-server-in-five-minutes"),
        ("Web console, status pages, Grafana", "web-console-status-pages-grafana"),
        ("`deploy/`: what operators copy", "deploy-what-operators-copy"),
        ("Where is X decided", "where-is-x-decided"),
    ]:
        assert slug(heading) == anchor


def test_every_link_in_the_docs_leads_to_a_file_and_heading() -> None:
    """The README was split into docs/: every relative link of the README, docs/, SECURITY.md,
    CHANGELOG.md and deploy/README.md names a file that exists and, with `#anchor`, a heading
    that file has, so a moved section cannot leave a link to nowhere."""
    pages = LINKED_DOCS + sorted(DOCS.glob("*.md"))
    assert len(pages) > len(LINKED_DOCS) + 5
    broken = {str(p.relative_to(ROOT)): b for p in pages if (b := broken_links(p))}
    assert not broken, broken


def test_readme_is_the_front_door() -> None:
    """README.md stays short (what mailprobe is, the two commands, the walk-through, links):
    reference material goes in docs/, and every docs/ page is linked from the README."""
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, "move reference material to docs/"
    unlinked = [p.name for p in DOCS.glob("*.md") if f"](docs/{p.name})" not in text]
    assert not unlinked, unlinked


def test_the_readme_lists_every_command_and_the_stream_every_side_check() -> None:
    """Each `python -m controller` command is a row of the README's Commands, and each side
    check an agent runs is named where docs/stream.md lists a result's `sideChecks`."""
    text = README.read_text()
    commands = next(
        a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    listed = set(re.findall(r"`python -m controller (?:[^`]*· `)?([a-z0-9-]+)", text))
    listed |= set(re.findall(r"· `([a-z0-9-]+) ", text))
    assert set(commands) <= listed, sorted(set(commands) - listed)
    stream = " ".join((DOCS / "stream.md").read_text().split())
    names = re.search(
        r"`sideChecks` holds each side check's facts of the round .*?: (.*?), each", stream
    )
    assert names is not None
    assert set(re.findall(r"`(\w+)`", names[1])) == set(SIDE_CHECKS)


def decided_rows() -> list[tuple[str, str, list[str]]]:
    """(rule, file, names) of every row of docs/architecture.md's "Where is X decided"."""
    block = between((DOCS / "architecture.md").read_text(), "decided")
    rows = []
    for line in block.splitlines()[2:]:
        rule, file, where = (cell.strip() for cell in line.strip("| ").split(" | "))
        rows.append((rule, file.strip("`"), re.findall(r"`([\w.]+)`", where)))
    return rows


def test_where_is_x_decided_names_code_that_exists() -> None:
    """Each rule of docs/architecture.md's table names one file, and every function, class or
    constant it points at is defined there: a rule moved to another module must move its row."""
    rows = decided_rows()
    assert len(rows) > 30
    wrong = []
    for rule, file, names in rows:
        path = ROOT / file
        if not path.is_file():
            wrong.append(f"{rule}: no file {file}")
            continue
        source = path.read_text()
        for name in names:
            last = name.rsplit(".", 1)[-1]
            if not re.search(rf"^\s*(async def |def |class ){last}\b|^{last}\b.*=", source, re.M):
                wrong.append(f"{rule}: {name} is not defined in {file}")
    assert not wrong, wrong


def layout_entries() -> dict[str, str]:
    """docs/architecture.md's "Code layout": each controller package (`monitors/`) → its rows."""
    block = between((DOCS / "architecture.md").read_text(), "layout")
    controller = block.split("\ncontroller/", 1)[1]
    entries: dict[str, str] = {}
    current = None
    for line in controller.splitlines()[1:]:
        if re.match(r"^\S", line):
            break
        m = re.match(r"^  (\w+)/\s", line)
        if m:
            current = m.group(1)
            entries[current] = line
        elif re.match(r"^  \S", line):
            current = None
        elif current is not None:
            entries[current] += " " + line.strip()
    return entries


def test_the_code_layout_is_what_the_docstrings_say() -> None:
    """The layout of docs/architecture.md is generated from the packages' and modules' own
    docstrings: a module added, moved, renamed or described anew changes it."""
    from tools.layout import render, summary

    assert between((DOCS / "architecture.md").read_text(), "layout").strip() == render(), (
        "run: python tools/layout.py --write"
    )
    assert summary(None) == ""
    assert summary("Who may do what.\n\nMore.") == "Who may do what"
    assert summary("Flows (issue 9): pure. Second sentence.") == "Flows: pure"


@pytest.mark.parametrize(
    ("docstring", "said"),
    [
        (
            "The fleet's health per country, pure (issue 66): what an operator alerts on about its"
            " own agents, as the default monitors of private locations do.",
            "The fleet's health per country, pure",
        ),
        (
            "What `judge (a)` decided (controller.alerting.rules), written in the evaluator's"
            " transaction: incidents opened and closed.",
            "What `judge (a)` decided, written in the evaluator's transaction",
        ),
        (
            "A sentence of many words " + "word " * 30,
            "A sentence of many words word word word word word word word word word word…",
        ),
    ],
)
def test_a_long_summary_loses_its_asides_then_is_cut(docstring: str, said: str) -> None:
    from tools.layout import SUMMARY_MAX, summary

    assert summary(docstring) == said
    assert len(summary(docstring)) <= SUMMARY_MAX


def test_the_code_layout_names_every_controller_module() -> None:
    """Each package of controller/ has its line in "Code layout", naming each of its modules
    (a module added, moved or renamed must be said there)."""
    entries = layout_entries()
    missing = []
    for package in sorted(
        p for p in (ROOT / "controller").iterdir() if (p / "__init__.py").is_file()
    ):
        said = entries.get(package.name)
        if said is None:
            missing.append(f"{package.name}/")
            continue
        for module in sorted(package.glob("*.py")):
            if module.stem != "__init__" and not re.search(rf"\b{module.stem}\b", said):
                missing.append(f"{package.name}/{module.name}")
    assert not missing, missing


def test_the_one_key_share_configuration_operators_are_given_is_the_one_measured() -> None:
    """docs/operating.md's OPENSSL_CONF for one X25519 share sets the groups bench/results/
    ossl35.md measured (testkit.openssl.ONE_SHARE_GROUPS, tested in tests/probers)."""
    from testkit.openssl import ONE_SHARE_GROUPS

    text = (DOCS / "operating.md").read_text()
    given = re.findall(r"^\s*Groups = (.+)$", text, flags=re.M)
    assert given == [ONE_SHARE_GROUPS]


def test_the_report_refusals_counted_unread_are_the_ones_docs_api_md_lists() -> None:
    """Every outcome the HTTPS endpoint counts before a report is read (`kind="unknown"`) is in
    the table of docs/api.md, and the table names no other."""
    counted = {
        m.group(1)
        for path in (ROOT / "controller" / "web").rglob("*.py")
        for m in re.finditer(r'report_taken\("unknown", "https", "(\w+)"\)', path.read_text())
    }
    text = (DOCS / "api.md").read_text()
    table = text[text.index("| answer | `outcome` counted |") :].split("\n\n")[0]
    listed = set(re.findall(r"\| `(\w+)` \|", table))
    assert (
        counted == listed == {"too_large", "unsupported_type", "too_slow", "rate_limited", "busy"}
    )


# A prose paragraph longer than this is a wall a reader skips: split it, or make it a table or a
# list. Tables, code blocks and headings are not prose; each list item is a paragraph of its own.
PARAGRAPH_MAX = 600
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")


def prose_paragraphs(text: str) -> list[tuple[int, str]]:
    """(first line, text with its lines joined) of each prose paragraph of a Markdown text."""
    found: list[tuple[int, str]] = []
    lines: list[str] = []
    start, fenced = 0, False

    def close() -> None:
        if lines:
            found.append((start, " ".join(line.strip() for line in lines)))
            lines.clear()

    for number, line in enumerate(text.splitlines(), 1):
        bare = line.strip()
        if bare.startswith("```"):
            close()
            fenced = not fenced
            continue
        if fenced or not bare or bare.startswith(("|", "#", "<!--")) or _LIST_ITEM.match(line):
            close()
            if fenced or not bare or bare.startswith(("|", "#", "<!--")):
                continue
        if not lines:
            start = number
        lines.append(line)
    close()
    return found


@pytest.mark.parametrize(
    ("text", "paragraphs"),
    [
        ("One.\nTwo.\n\nThree.", [(1, "One. Two."), (4, "Three.")]),
        (
            "Intro:\n- a\n  b\n- c\n\n  more of c",
            [(1, "Intro:"), (2, "- a b"), (4, "- c"), (6, "more of c")],
        ),
        ("| a | b |\n| --- | --- |\n\n```sh\nlong\n```\n# Title\nText", [(8, "Text")]),
        (
            "<!-- x:start -->\nkept\n1. first\n2. second",
            [(2, "kept"), (3, "1. first"), (4, "2. second")],
        ),
    ],
)
def test_prose_paragraphs_are_told_from_tables_code_and_list_items(
    text: str, paragraphs: list[tuple[int, str]]
) -> None:
    assert prose_paragraphs(text) == paragraphs


def test_no_prose_paragraph_is_a_wall() -> None:
    """The README and every page of docs/ are read once by an operator: no prose paragraph is
    longer than PARAGRAPH_MAX characters (issue 84)."""
    walls = [
        f"{path.relative_to(ROOT)}:{line} ({len(paragraph)} characters): {paragraph[:60]}…"
        for path in [README, *sorted(DOCS.glob("*.md"))]
        for line, paragraph in prose_paragraphs(path.read_text())
        if len(paragraph) > PARAGRAPH_MAX
    ]
    assert not walls, "split these into short paragraphs, a list or a table:\n" + "\n".join(walls)
