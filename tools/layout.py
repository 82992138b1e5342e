"""docs/architecture.md's code layout, made from the packages' and modules' own docstrings.

Each package and module is listed with its docstring's first sentence, so the layout says what
the code says of itself: a module added, moved or renamed changes the block, and
tests/unit/test_docs.py fails until the committed block matches.

    python tools/layout.py            print the block
    python tools/layout.py --write    replace it between docs/architecture.md's layout markers
"""

import argparse
import ast
import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
# The Python trees the layout lists, in the order of the layers: what both sides share first.
TREES = ("shared", "controller", "agent", "testkit")
WIDTH = 100
# A summary longer than this loses its asides, then is cut at a colon or semicolon past
# HEAD_MIN characters, then at a word.
SUMMARY_MAX = 80
HEAD_MIN = 25
START, END = "<!-- layout:start -->", "<!-- layout:end -->"
_ISSUE = re.compile(r" \(issue \d+\)")


def _without_asides(text: str) -> str:
    """text without its top-level parenthesised asides (code spans kept whole)."""
    out, depth, code = [], 0, False
    for c in text:
        if c == "`" and depth == 0:
            code = not code
        if not code and c == "(":
            depth += 1
        if depth == 0:
            out.append(c)
        if not code and c == ")" and depth:
            depth -= 1
    return re.sub(r" +([,.;:])", r"\1", re.sub(r"  +", " ", "".join(out))).strip()


def _first_cut(text: str) -> int | None:
    """The first colon or semicolon outside code, past the first HEAD_MIN characters."""
    code = False
    for i, c in enumerate(text):
        if c == "`":
            code = not code
        elif c in ":;" and not code and i >= HEAD_MIN:
            return i
    return None


def summary(docstring: str | None) -> str:
    """The first sentence of a docstring; a long one without its asides, cut at a colon or a
    semicolon, or at a word; "" without a docstring."""
    if not docstring:
        return ""
    text = " ".join(docstring.split("\n\n", 1)[0].split())
    text = _ISSUE.sub("", text)
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z`])", text, maxsplit=1)[0].rstrip(".")
    if len(sentence) > SUMMARY_MAX:
        sentence = _without_asides(sentence)
    if len(sentence) > SUMMARY_MAX and (cut := _first_cut(sentence)) is not None:
        sentence = sentence[:cut]
    if len(sentence) > SUMMARY_MAX:
        sentence = sentence[: SUMMARY_MAX - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"
    return sentence


def _docstring(path: Path) -> str | None:
    return ast.get_docstring(ast.parse(path.read_text(), str(path)))


def _rows(package: Path) -> list[tuple[str, str]]:
    """(name, summary) of a package's modules, then its subpackages (`name/`)."""
    modules = sorted(p for p in package.glob("*.py") if p.stem != "__init__")
    subpackages = sorted(p.parent for p in package.glob("*/__init__.py"))
    return [(m.stem, summary(_docstring(m))) for m in modules] + [
        (f"{p.name}/", summary(_docstring(p / "__init__.py"))) for p in subpackages
    ]


def _lines(package: Path, depth: int) -> list[str]:
    """A package's rows, each name in a column as wide as its longest sibling, each summary
    wrapped under its own column; a subpackage's rows follow it, two spaces deeper."""
    rows = _rows(package)
    indent = "  " * depth
    column = max(len(name) for name, _ in rows) + 2
    out: list[str] = []
    for name, said in rows:
        head = f"{indent}{name:<{column}}"
        out.extend(
            textwrap.wrap(
                said or "-",
                width=WIDTH,
                initial_indent=head,
                subsequent_indent=" " * len(head),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
        if name.endswith("/"):
            out.extend(_lines(package / name.rstrip("/"), depth + 1))
    return out


def render(root: Path = ROOT) -> str:
    """The block between the layout markers: a fenced listing of every tree of TREES."""
    out = ["```text"]
    column = max(len(tree) for tree in TREES) + 3
    for tree in TREES:
        head = f"{tree + '/':<{column}}"
        out.extend(
            textwrap.wrap(
                summary(_docstring(root / tree / "__init__.py")),
                width=WIDTH,
                initial_indent=head,
                subsequent_indent=" " * column,
                break_long_words=False,
            )
        )
        out.extend(_lines(root / tree, 1))
    out.append("```")
    return "\n".join(out)


def written(text: str, block: str) -> str:
    """text with what stands between the layout markers replaced by block."""
    start = text.index(START) + len(START)
    return f"{text[:start]}\n{block}\n{text[text.index(END) :]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write", action="store_true", help="replace the block in the doc")
    args = parser.parse_args(argv)
    block = render()
    if args.write:
        DOC.write_text(written(DOC.read_text(), block))
    else:
        print(block)


if __name__ == "__main__":
    main()
