"""A round trip's Authentication-Results and ARC verdicts as the console shows them: a known
verdict keeps its level and meaning, anything else is "other" (its class never the header's
text), a missing one is "—", and a long value is cut."""

import pytest

from controller.web.console.roundtrip_view import (
    MEANINGS,
    SHOWN_CHARS,
    UNKNOWN,
    UNSTATED,
    legend,
    verdict,
    verdicts,
)
from shared.messages import ArcResults, AuthResults


@pytest.mark.parametrize(
    ("value", "text", "level", "meaning"),
    [
        ("pass", "pass", "pass", MEANINGS["pass"]),
        ("FAIL", "FAIL", "fail", MEANINGS["fail"]),
        ("softfail", "softfail", "softfail", MEANINGS["softfail"]),
        ("temperror", "temperror", "temperror", MEANINGS["temperror"]),
        (None, "—", "unstated", UNSTATED),
        ("  ", "—", "unstated", UNSTATED),
        ("<b>pass</b>", "<b>pass</b>", "other", UNKNOWN),
        ("x" * 40, "x" * (SHOWN_CHARS - 1) + "…", "other", UNKNOWN),
    ],
)
def test_a_verdict(value: str | None, text: str, level: str, meaning: str) -> None:
    v = verdict("SPF", value)
    assert (v.text, v.level, v.meaning) == (text, level, meaning)


def test_verdicts_are_spf_dkim_dmarc_then_arcs_chain_validation() -> None:
    got = verdicts(AuthResults(spf="pass", dmarc="fail"), ArcResults(instances=2, cv="fail"))
    assert [(v.method, v.level) for v in got] == [
        ("SPF", "pass"),
        ("DKIM", "unstated"),
        ("DMARC", "fail"),
        ("ARC", "fail"),
    ]
    assert [v.level for v in verdicts(None, None)] == ["unstated"] * 4


def test_the_legend_names_each_known_verdict_shown_once() -> None:
    rows = [verdicts(AuthResults(spf="pass", dkim="pass", dmarc="odd"), None)]
    rows.append(verdicts(AuthResults(spf="none"), ArcResults(cv="pass")))
    assert legend(rows) == [("pass", MEANINGS["pass"]), ("none", MEANINGS["none"])]
