"""A status notice's title and body pattern says what the API keeps (not blank as `str.strip`
counts white space, no NUL) in both regex dialects that read it: Python's, which the API
validates with, and JSON Schema's (ECMA-262), which clients and the fuzzer validate with."""

import re

import jsonschema_rs
import pytest

from controller.web.api.status_notices import _TEXT

ECMA = jsonschema_rs.validator_for({"type": "string", "pattern": _TEXT})
SURROGATES = range(0xD800, 0xE000)  # not a str JSON can carry alone


def kept(text: str) -> bool:
    return "\x00" not in text and bool(text.strip())


@pytest.mark.parametrize("plane", range(17))
def test_every_single_character_is_judged_alike_by_both_dialects_and_strip(plane: int) -> None:
    for code in range(plane * 0x10000, (plane + 1) * 0x10000):
        if code in SURROGATES:
            continue
        char = chr(code)
        want = kept(char)
        assert (re.fullmatch(_TEXT, char) is not None) == want, hex(code)
        assert ECMA.is_valid(char) == want, hex(code)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("\x1d", False),  # white space to Python, not to ECMA-262's \s
        ("\ufeff", True),  # the reverse
        (" \xa0\u3000\t", False),
        (" a ", True),
        ("a\x00", False),
        ("\x85x", True),
    ],
)
def test_texts(text: str, want: bool) -> None:
    assert kept(text) == want
    assert (re.fullmatch(_TEXT, text) is not None) == want
    assert ECMA.is_valid(text) == want
