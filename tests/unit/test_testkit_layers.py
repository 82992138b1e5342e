"""`tests/` and `bench/` share what both need through `testkit/` (loopback peers, servers run for
them, the campaigns' rigs) and never reach each other; `testkit/` reaches neither. Their imports
are the `tests-bench` import contract of pyproject.toml (`make lint`); here, what import-linter
cannot see: a module named by a string to a subprocess (`python -m MODULE`)."""

import ast
import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Which top-level packages each may not reach.
BANNED = {"tests": {"bench"}, "bench": {"tests"}, "testkit": {"tests", "bench"}}
# The one crossing allowed, and why: the scale campaign compares this tree with another
# checkout (`--against`) by running each tree's front door, `python -m bench scale`, which
# checkouts older than testkit/ have too; in this tree it is a process, not an import.
ALLOWED = {"testkit.campaigns.scale -> bench"}


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def run_modules(source: str) -> set[str]:
    """The modules `source` names to `python -m`: a string literal right after `"-m"` in a
    list, or the first item of a list handed to a `start_module(...)` helper."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.List | ast.Tuple):
            for before, item in itertools.pairwise(node.elts):
                if (
                    isinstance(before, ast.Constant)
                    and before.value == "-m"
                    and isinstance(item, ast.Constant)
                    and isinstance(item.value, str)
                ):
                    found.add(item.value)
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("start_module")
            and node.args
            and isinstance(node.args[0], ast.List)
            and node.args[0].elts
            and isinstance(first := node.args[0].elts[0], ast.Constant)
            and isinstance(first.value, str)
        ):
            found.add(first.value)
    return found


def crossings(top: str, banned: set[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / top).rglob("*.py")):
        module, source = _module(path), path.read_text()
        if not any(name in source for name in banned):
            continue  # names neither: nothing to parse
        for target in sorted(run_modules(source)):
            line = f"{module} -> {target}"
            if target.split(".")[0] in banned and line not in ALLOWED:
                found.append(line)
    return found


def test_tests_bench_and_testkit_run_one_way() -> None:
    """Pins: no module of tests/ runs bench/ with `python -m`, none of bench/ runs tests/, and
    testkit/ runs neither."""
    found = [line for top, banned in BANNED.items() for line in crossings(top, banned)]
    assert found == []


def test_the_scan_sees_what_it_looks_for() -> None:
    planted = (
        "import bench.common\n"
        "from tests.peers import smtp\n"
        "def f():\n"
        "    from bench import scale\n"
        "    subprocess.run([sys.executable, '-m', 'bench', 'scale'])\n"
        "    start_module(['bench.smtp_target', '1'], env, log)\n"
    )
    assert run_modules(planted) == {"bench", "bench.smtp_target"}
