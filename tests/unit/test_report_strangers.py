"""A stranger's text as reports keep it (shared/strangers.py), and a mailed
message's source, as tables."""

import pytest

from controller.reports import mail
from shared.strangers import hidden, kept


@pytest.mark.parametrize(
    ("value", "most", "out"),
    [
        ("Google LLC", 255, "Google LLC"),
        ("  Google \n\t LLC ", 255, "Google LLC"),
        ("Evil\x00Corp", 255, "EvilCorp"),
        ("red\x1b[31m", 255, "red[31m"),
        ("\u202egnp.exe", 255, "gnp.exe"),  # right-to-left override
        ("a\x85b", 255, "a b"),  # NEL is white space
        ("a\x9bb\u200bc", 255, "abc"),  # C1 control, zero-width space
        ("été 日本", 255, "été 日本"),
        ("abcdef", 3, "abc"),
        ("\x00" * 10, 255, ""),
    ],
)
def test_a_strangers_text_is_kept_without_hidden_characters(
    value: str, most: int, out: str
) -> None:
    assert kept(value, most) == out
    assert not hidden(kept(value, most))


@pytest.mark.parametrize(
    ("value", "found"), [("mx1.example.com", False), ("mx1\x00.example", True), ("a b", False)]
)
def test_hidden_says_whether_a_character_would_be_dropped(value: str, found: bool) -> None:
    assert hidden(value) is found


def test_a_mailed_messages_source_holds_no_hidden_character() -> None:
    raw = b"From: =?utf-8?q?a=00b?= <x@y>\r\nSubject: hi\x1b[31m\x00there\r\n\r\nbody"
    assert mail.source(raw) == "mail from ab <x@y>: hi[31mthere"
