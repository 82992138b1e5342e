"""The document's patterns for free text say what the API keeps, in both regex dialects that
read them: Python's (the API's own validation) and JSON Schema's (ECMA-262: clients and the
fuzzer). A status notice's title and body: not blank as `str.strip` counts white space, no NUL.
A name (monitors, customers, channels): one line (`validation.name`), not blank."""

import re
from collections.abc import Callable

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.monitors.errors import Invalid
from controller.monitors.validation import name
from controller.web.api.openapi_doc import NAME
from controller.web.api.status_notices import _TEXT

SURROGATES = range(0xD800, 0xE000)  # not a str JSON can carry alone


def notice_kept(text: str) -> bool:
    return "\x00" not in text and bool(text.strip())


def name_kept(text: str) -> bool:
    try:
        name(text)
    except Invalid:
        return False
    return True


CASES: list[tuple[str, str, Callable[[str], bool]]] = [
    ("notice", _TEXT, notice_kept),
    ("name", str(NAME["pattern"]), name_kept),
]


@pytest.mark.parametrize(("pattern", "kept"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("plane", [0, 1, 2, 14, 15, 16])
def test_every_single_character_is_judged_alike_by_both_dialects_and_the_api(
    pattern: str, kept: Callable[[str], bool], plane: int
) -> None:
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    for code in range(plane * 0x10000, (plane + 1) * 0x10000):
        if code in SURROGATES:
            continue
        char = chr(code)
        want = kept(char)
        assert (re.fullmatch(pattern, char) is not None) == want, hex(code)
        assert ecma.is_valid(char) == want, hex(code)


@pytest.mark.parametrize(
    ("text", "notice", "named"),
    [
        ("\x1d", False, False),  # white space to Python, not to ECMA-262's \s
        ("\ufeff", True, True),  # the reverse
        (" \xa0\u3000", False, False),
        (" a ", True, True),
        ("a\x00", False, False),
        ("a\tb", True, False),  # a name is one line, without control characters
        ("\x85x", True, True),  # white space around a name is stripped, control or not
        ("\tx\n", True, True),
        ("x\x85x", True, False),
        ("x\u2028", True, True),
        ("x\u2028x", True, False),
        (" " + "x" * 199, True, True),
        (" " + "x" * 200, True, False),  # a name's length counts what was sent
    ],
)
def test_texts(text: str, notice: bool, named: bool) -> None:
    rules = ((_TEXT, notice_kept, notice, 5000), (str(NAME["pattern"]), name_kept, named, 200))
    for pattern, kept, want, longest in rules:
        assert kept(text) == want
        assert (len(text) <= longest and re.fullmatch(pattern, text) is not None) == want
        schema = {"type": "string", "pattern": pattern, "maxLength": longest}
        assert jsonschema_rs.validator_for(schema).is_valid(text) == want


# Letters, white space of both kinds, control characters, line separators, NUL, BOM.
ALPHABET = "ab \t\n\x0b\x1c\x1d\x1f\x7f\x85\xa0\u2000\u2028\u2029\u3000\ufeff\x00"


@given(st.text(alphabet=ALPHABET, max_size=12))
def test_mixed_texts_are_judged_alike(text: str) -> None:
    for pattern, kept in ((_TEXT, notice_kept), (str(NAME["pattern"]), name_kept)):
        want = kept(text)
        assert (re.fullmatch(pattern, text) is not None) == want
        assert (
            jsonschema_rs.validator_for({"type": "string", "pattern": pattern}).is_valid(text)
            == want
        )
