"""Each rule is decided in one place (docs/architecture.md, "Where is X decided").

A rule needed in SQL is one SQL function in a migration (standing in its file under
controller/db/definitions), called by every statement that needs it, with a Python twin that a
test holds to it on a table of cases against PostgreSQL. Here:

- the expressions of rules that were once restated (in SQL strings and in Python) are written
  nowhere but in the place that decides them: each rule's patterns, checked first to catch
  the restatements they were made from, match no other file of the product;
- each such rule has its row in the doc's table, naming that place;
- every row decided by SQL functions names functions its migration defines (and no later one
  redefines), that statements of the product call, and a Python twin that exists and that the
  row's test compares with the functions."""

import re
from dataclasses import dataclass
from pathlib import Path

from tests.unit.test_docs import ROOT, decided_rows

MIGRATIONS = ROOT / "controller/db/migrations"
ROUND_RULES = "controller/db/migrations/0053_rule_functions.sql"


@dataclass(frozen=True)
class Restated:
    """A rule once written in several places: the files that may write it (the one that
    decides it, its twin's), the patterns of its expression, and restatements they catch."""

    rule: str
    decided_in: tuple[str, ...]
    patterns: tuple[str, ...]
    caught: tuple[str, ...]


RESTATED = [
    Restated(
        "the countries a round goes to and expects",
        (ROUND_RULES, "controller/alerting/rules.py"),
        (
            r"coalesce\( ?[\w.{}]*allowed_country_codes ?, ?[\w.{}]*round_countries",
            r"greatest\( ?1 ?, ?cardinality",
            r"\b(allowed\w*|listed) or (latest|went|[\w.]*countries)\b",
        ),
        (
            "AND (coalesce(m.allowed_country_codes, m.round_countries) IS NULL",
            "OR s.country = ANY(coalesce(m.allowed_country_codes, m.round_countries)))",
            "SELECT {COLUMNS}, coalesce(allowed_country_codes, round_countries) AS checked_from",
            ">= (SELECT greatest(1, cardinality(coalesce(m.allowed_country_codes,"
            " m.round_countries)))",
            "countries = list(monitor.allowed_country_codes or w.rounds.countries or ())",
        ),
    ),
    Restated(
        "how many countries a round is planned for",
        (ROUND_RULES, "controller/scheduling/rules.py"),
        (
            r"cardinality\( ?[\w.{}]*allowed_country_codes",
            r"len\( ?[\w.]*allowed_country_codes",
            r"len\( ?(\w+) ?\) if \1 else",
        ),
        (
            'f"{legs} * coalesce(cardinality({alias}.allowed_country_codes), $2)"',
            "coalesce(cardinality(allowed_country_codes), $2) * 60.0 / check_interval",
            "countries = len(monitor.allowed_country_codes or ()) or lim.default_countries",
            "(len(countries) if countries else self._default_countries) * 60.0",
            "return countries, len(countries) if countries else default",
        ),
    ),
    Restated(
        "when a round closes",
        (ROUND_RULES, "controller/alerting/rules.py"),
        (
            r"make_interval\( ?secs ?=> ?[\w.]*timeout_seconds",
            r"least\( ?make_interval\( ?secs ?=> ?[\w.]*check_interval",
            r"\+ ?[\w.]*CLOSE_GRACE\b",
            r"\bCLOSE_GRACE ?=",
        ),
        (
            "least(make_interval(secs => m.check_interval), make_interval(secs => $3))"
            " + make_interval(secs => m.timeout_seconds + $4) AS closes_after,",
            "return schedule.expires_at(at, monitor.check_interval) + timeout + alerts.CLOSE_GRACE",
            "CLOSE_GRACE = timedelta(seconds=5)",
        ),
    ),
    Restated(
        "when nothing of a round's jobs can still happen (expiry plus timeout)",
        ("controller/scheduling/rules.py",),
        (
            r"expires_at\b[^=]{0,60}\+ ?timedelta\( ?seconds ?= ?[\w.]*timeout",
            r"expires_at\b[^=]{0,60}\+ ?timeout\b",
        ),
        (
            "settles = parse_iso(job.expires_at) + timedelta(seconds=job.timeout_seconds)",
            "schedule.expires_at(now, m.monitor.check_interval)\n"
            "                + timedelta(seconds=m.monitor.timeout_seconds),",
            "return schedule.expires_at(at, monitor.check_interval) + timeout",
        ),
    ),
    Restated(
        "the account a monitor logs in to and the logins a check makes to it",
        (ROUND_RULES, "controller/scheduling/plan.py"),
        (
            r"config ?-> ?'receive' ?->> ?'user'",
            r"config ?-> ?'send' ?-> ?'auth' ?->> ?'user'",
            r"coalesce\( ?[\w.{}]*config ?-> ?'auth' ?->> ?'user'",
        ),
        (
            "lower(nullif({m}.config->'receive'->>'user', '')) || '@'",
            "lower(nullif(coalesce({m}.config->'auth'->>'user', {m}.config->>'user'), '')) || '@'",
            "CASE WHEN {m}.type = 'roundtrip' AND lower(nullif({m}.config->'send'->'auth'->>'user',"
            " ''))",
        ),
    ),
    Restated(
        "a monitor's logins per window",
        (ROUND_RULES, "controller/logins/cap.py"),
        (r"2 \* ceil\(", r"2 \* rounds_per_window\("),
        (
            'f" * (2 * ceil({int(WINDOW.total_seconds())}.0 / {alias}.check_interval)::int + $3)"',
            "return legs * countries * (2 * rounds_per_window(interval_s) + trigger_burst)",
        ),
    ),
    Restated(
        "how a batch of results moves a (monitor, country) state",
        ("controller/db/migrations/0110_country_state_move.sql",),
        (
            r"CASE WHEN [\w.]*reset_(fail|succ) THEN 0",
            r"greatest\( ?[\w.]*last_checked_at ?, ?[\w.]*checked_at",
            r"[\w.]*detail_at ?>= ?coalesce\( ?[\w.]*detail_at ?, ?'-infinity'",
        ),
        (
            "consecutive_failures = CASE WHEN u.reset_fail THEN 0 ELSE s.consecutive_failures END"
            " + u.add_fail,",
            "last_checked_at = greatest(s.last_checked_at, u.checked_at),",
            "detail_at = CASE WHEN u.detail_at >= coalesce(s.detail_at, '-infinity')",
        ),
    ),
    Restated(
        "a monitor's timeout at most its interval",
        ("controller/monitors/validation.py",),
        (
            r"timeout\w* ?(>|<=) ?[\w.]*interval",
            r"interval\w* ?(<|>=) ?[\w.]*timeout",
        ),
        (
            "if timeout > interval_seconds:",
            "if timeout_seconds > check_interval:",
            "if check_interval < timeout_seconds:",  # the same, said the other way round
        ),
    ),
    Restated(
        "a monitor's default timeout",
        ("controller/monitors/validation.py",),
        (r"min\( ?[\w.]*TIMEOUT_DEFAULT",),
        (
            'values.setdefault("timeout_seconds", min(validation.TIMEOUT_DEFAULT,'
            ' values["check_interval"]))',
            '"timeout_seconds": min(validation.TIMEOUT_DEFAULT, interval),',
        ),
    ),
]


def normalized(text: str) -> str:
    """Whitespace as one space, adjacent string literals joined (SQL split over lines)."""
    return re.sub(r"\s+", " ", re.sub(r"\"\s+\"|'\s+'", "", text))


def product_files() -> dict[str, str]:
    """Every source file of the product (controller, shared, agent; the migrations and the
    statements kept in .sql files), by path, its text normalized."""
    paths = [
        *ROOT.glob("controller/**/*.py"),
        *ROOT.glob("shared/**/*.py"),
        *ROOT.glob("agent/**/*.py"),
        *ROOT.glob("controller/**/*.sql"),
    ]
    # The schema snapshot (tools/schema.py) restates the migrations, which are read here.
    return {
        str(p.relative_to(ROOT)): normalized(p.read_text())
        for p in paths
        if p.relative_to(ROOT).as_posix() != "controller/db/schema.sql"
    }


def test_each_pattern_catches_the_restatements_it_was_made_from() -> None:
    """A pattern that catches nothing would prove nothing: each rule's patterns together catch
    every restatement of it that was once in the code (and the same said the other way round),
    and each pattern catches one."""
    for r in RESTATED:
        for example in r.caught:
            assert any(re.search(p, normalized(example)) for p in r.patterns), (r.rule, example)
        for p in r.patterns:
            assert any(re.search(p, normalized(e)) for e in r.caught), (r.rule, p)


def defined_by(path: str, decided_in: tuple[str, ...]) -> bool:
    """Whether `path` is the repeatable definition (controller/db/definitions) of a function
    one of the migrations in `decided_in` creates: that file is where the function stands."""
    if not path.startswith("controller/db/definitions/functions/"):
        return False
    name = Path(path).stem
    created = re.compile(rf"FUNCTION\s+(public\.)?{name}\s*\(", re.IGNORECASE)
    return any(
        created.search((ROOT / m).read_text())
        for m in decided_in
        if m.startswith(str(MIGRATIONS.relative_to(ROOT)))
    )


def test_no_rule_is_written_outside_the_place_that_decides_it() -> None:
    files = product_files()
    for r in RESTATED:
        assert all(f in files for f in r.decided_in), r.decided_in
    twice = [
        f"{r.rule}: {path} writes {m.group(0)!r}"
        for r in RESTATED
        for path, text in files.items()
        if path not in r.decided_in and not defined_by(path, r.decided_in)
        for p in r.patterns
        for m in re.finditer(p, text)
    ]
    assert not twice, "decide it once and ask that place:\n" + "\n".join(twice)


def test_each_restated_rule_has_its_row_naming_the_place_that_decides_it() -> None:
    rows = decided_rows()
    missing = [
        r.rule
        for r in RESTATED
        if not any(r.rule in rule and file == r.decided_in[0] for rule, file, _ in rows)
    ]
    assert not missing, missing


def sql_functions_defined() -> dict[str, str]:
    """Each SQL function → the migration that defines it last (migrations run in order)."""
    defined: dict[str, str] = {}
    for path in sorted(MIGRATIONS.glob("*.sql")):
        for name in re.findall(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\(", path.read_text()):
            defined[name] = str(path.relative_to(ROOT))
    return defined


def sql_function_files() -> dict[str, str]:
    """Each SQL function kept as a definition file (applied after the migrations) → its file."""
    return {
        path.stem: str(path.relative_to(ROOT))
        for path in (ROOT / "controller/db/definitions/functions").glob("*.sql")
    }


def test_each_sql_rule_is_one_function_every_statement_calls_with_a_tested_twin() -> None:
    """A row decided in a migration names its SQL functions (`the SQL function f` or `the SQL
    functions f, g`), each defined last by that migration and called by the product's code (a
    statement, a trigger, or another function of its migration); when it names a Python twin
    (`its Python twin: `a`, `b` in path`, `held to it by tests/x.py`), the twin is defined
    there and that test asks both."""
    defined, kept = sql_functions_defined(), sql_function_files()
    files = product_files()
    rows = [(rule, file, where) for rule, file, where in raw_rows() if file.endswith(".sql")]
    assert len(rows) >= 4
    wrong = []
    for rule, file, where in rows:
        m = re.match(r"the (?:trigger )?(?:SQL )?functions? ([\w, ]+)$", where)
        if not m:
            wrong.append(f"{rule}: {where!r} names no SQL function")
            continue
        names = [n.strip() for n in m.group(1).split(",")]
        for name in names:
            if file not in (defined.get(name), kept.get(name)):
                wrong.append(f"{rule}: {name} is defined last in {defined.get(name)}, not {file}")
            callers = [
                p for p, text in files.items() if p != file and re.search(rf"\b{name}\(", text)
            ]
            # called by the product, or by a function of its own migration
            if not callers and len(re.findall(rf"\b{name}\(", files[file])) < 2:
                wrong.append(f"{rule}: nothing calls {name}")
        twin = re.search(r"its Python twins?: ((?:`[\w.]+`(?:, )?)+) in ([\w/.]+)", rule)
        if twin is None:
            continue
        source = (ROOT / twin.group(2)).read_text()
        for name in re.findall(r"`([\w.]+)`", twin.group(1)):
            if not re.search(rf"^(def |class ){name}\b|^{name}\b.*=", source, re.M):
                wrong.append(f"{rule}: its twin {name} is not defined in {twin.group(2)}")
        held = re.search(r"held to (?:it|them) by (tests/[\w/]+\.py)", rule)
        if held is None:
            wrong.append(f"{rule}: no test holds the twin to the SQL")
            continue
        test = (ROOT / held.group(1)).read_text()
        for name in [*names, *re.findall(r"`([\w.]+)`", twin.group(1))]:
            if name not in test:
                wrong.append(f"{rule}: {held.group(1)} does not ask {name}")
    assert not wrong, wrong


def raw_rows() -> list[tuple[str, str, str]]:
    """(rule, file, where) of the doc's table, the cells as written."""
    text = (ROOT / "docs/architecture.md").read_text()
    block = text.split("<!-- decided:start -->\n", 1)[1].split("<!-- decided:end -->", 1)[0]
    rows = []
    for line in block.splitlines()[2:]:
        rule, file, where = (cell.strip() for cell in line.strip("| ").split(" | "))
        rows.append((rule, file.strip("`"), where))
    return rows


def test_the_scan_reads_the_product() -> None:
    """The scan is not vacuous: it reads the migrations and the modules the rules were in."""
    files = product_files()
    assert ROUND_RULES in files and "controller/ingest/alert_queue_store.py" in files
    assert "controller/ingest/store_results.sql" in files
    assert len(files) > 200
    assert Path(ROOT / ROUND_RULES).is_file()
