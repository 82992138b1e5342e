"""The SMTP client parses an EHLO reply once per distinct list of extensions: the session's
state after an EHLO is what aiosmtplib's own parse leaves, whether the list was met before or
not, and the memo is bounded (entries, and the length of a list it keeps)."""

import gc
import tracemalloc
from collections.abc import Iterable

import aiosmtplib
import pytest
from aiosmtplib import SMTPResponse

from shared.mailclient import smtp as client

POSTFIX = (
    "mx.example.org\nPIPELINING\nSIZE 10240000\nVRFY\nETRN\nSTARTTLS\nENHANCEDSTATUSCODES\n"
    "8BITMIME\nDSN\nSMTPUTF8\nCHUNKING"
)
REPLIES = {
    "postfix": POSTFIX,
    "greeting only": "mx.example.org Hello",
    "empty": "",
    "old-style AUTH after the new": "x\nAUTH PLAIN LOGIN CRAM-MD5\nAUTH=LOGIN PLAIN",
    "old-style AUTH before the new": "x\nAUTH=LOGIN\nAUTH LOGIN PLAIN XOAUTH2",
    "a keyword twice, the last wins": "x\nSIZE 100\nsize 200\nSize",
    "blank lines, tabs, spaces": "x\n\n  \n\tPIPELINING\t\nSIZE   51200000\nX-TAB\tA",
    "case": "x\nStartTls\nauth plain LOGIN",
    "not UTF-8": "x\nX-GR\udcfc\udcdfE\nAUTH PLAIN",
    "many": "x\n" + "\n".join(f"X-EXT-{i} {'p' * 20}" for i in range(150)),
}
EXTENSIONS = ["starttls", "auth", "size", "pipelining", "smtputf8", "x-tab"]


def _state(smtp: aiosmtplib.SMTP) -> tuple[object, ...]:
    return (
        smtp.last_ehlo_response,
        smtp.esmtp_extensions,
        list(smtp.esmtp_extensions),  # the order, which `advertised` keeps
        smtp.server_auth_methods,
        smtp.supported_auth_methods,
        smtp.supports_esmtp,
        smtp.is_ehlo_or_helo_needed,
        [smtp.supports_extension(e) for e in EXTENSIONS],
    )


@pytest.fixture(autouse=True)
def _empty_memo() -> None:
    client._EHLO_MEMO.clear()


@pytest.mark.parametrize("name", REPLIES)
def test_the_state_after_ehlo_is_aiosmtplibs_first_time_and_again(name: str) -> None:
    message = REPLIES[name]
    library, first, again = aiosmtplib.SMTP(), client.Client(), client.Client()
    library.last_ehlo_response = SMTPResponse(250, message)
    first.last_ehlo_response = SMTPResponse(250, message)
    # the same list under another first line (a server naming the client) is found again
    renamed = "other.example " + message.partition("\n")[1] + message.partition("\n")[2]
    again.last_ehlo_response = SMTPResponse(250, renamed)
    library_again = aiosmtplib.SMTP()
    library_again.last_ehlo_response = SMTPResponse(250, renamed)
    assert _state(first) == _state(library)
    assert _state(again) == _state(library_again)
    assert first.extensions is not None and again.extensions is not None
    advertised = tuple(f"{k} {v}" for k, v in library.esmtp_extensions.items())
    assert first.extensions.advertised == again.extensions.advertised == advertised
    kept = len(message.partition("\n")[2]) <= client.EHLO_MEMO_TEXT_MAX
    assert (again.extensions is first.extensions) is kept


def test_a_session_changing_its_extensions_does_not_change_the_memo() -> None:
    one, two = client.Client(), client.Client()
    one.last_ehlo_response = SMTPResponse(250, POSTFIX)
    one.esmtp_extensions["x-mine"] = ""
    one.server_auth_methods.append("plain")
    two.last_ehlo_response = SMTPResponse(250, POSTFIX)
    assert "x-mine" not in two.esmtp_extensions and two.server_auth_methods == []


def test_extensions_are_none_once_aiosmtplib_forgets_the_reply() -> None:
    """STARTTLS and close reset what EHLO said (RFC 3207); so does `extensions`."""
    smtp = client.Client()
    assert smtp.extensions is None
    smtp.last_ehlo_response = SMTPResponse(250, POSTFIX)
    assert smtp.extensions is not None
    smtp.close()
    assert smtp.extensions is None and smtp.esmtp_extensions == {}


def test_the_memo_is_bounded_in_entries_and_in_the_length_of_a_list() -> None:
    for i in range(client.EHLO_MEMO_MAX + 20):
        client.Client().last_ehlo_response = SMTPResponse(250, f"x\nX-{i}\nSIZE {i}")
    assert len(client._EHLO_MEMO) == client.EHLO_MEMO_MAX
    assert "X-0\nSIZE 0" not in client._EHLO_MEMO  # the least recently met went first
    long = "x\n" + "\n".join(f"X-{i:05d}" for i in range(client.EHLO_MEMO_TEXT_MAX // 4))
    smtp = client.Client()
    smtp.last_ehlo_response = SMTPResponse(250, long)
    assert long.partition("\n")[2] not in client._EHLO_MEMO
    assert len(smtp.esmtp_extensions) == client.EHLO_MEMO_TEXT_MAX // 4


def _held_by_memo(replies: Iterable[str]) -> int:
    """Bytes the memo holds once `replies` were met, each by a session of its own."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for reply in replies:
            client.Client().last_ehlo_response = SMTPResponse(250, reply)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _hostile(i: int, lines: int, width: int) -> str:
    """A list of `lines` distinct keywords `width` characters long, 4 bytes each in memory,
    different for every `i`."""
    return "x\n" + "\n".join(
        chr(0x10000 + i) + chr(0x10000 + j) * (width - 1) for j in range(lines)
    )


def test_a_server_varying_its_list_holds_a_few_megabytes_at_most() -> None:
    """A hostile server varies its EHLO list on every session: the memo holds its last
    EHLO_MEMO_MAX lists, and their size is bounded in characters and in lines, so what they
    hold stays ~10 MB whether the list is many short keywords or a few long ones."""
    most = client.EHLO_MEMO_MAX
    text = client.EHLO_MEMO_TEXT_MAX
    many_short = _held_by_memo(_hostile(i, text // 2, 1) for i in range(most))
    client._EHLO_MEMO.clear()
    lines = client.EHLO_MEMO_LINES_MAX - 1
    longest = _held_by_memo(_hostile(i, lines, (text - lines) // lines) for i in range(most))
    print(f"memo of {most} lists: {many_short / 1e6:.1f} MB short, {longest / 1e6:.1f} MB long")
    assert max(many_short, longest) < 16_000_000
