"""The cause of an incident (and of a missed round) in words a person acts on."""

import pytest

from controller.notify.causes import describe, label
from controller.notify.texts import one_line


@pytest.mark.parametrize(
    ("kind", "message", "words", "short"),
    [
        ("tls", "certificate has expired", "TLS is broken", "TLS broken"),
        ("temporary", "421 4.3.2 Service not available", "temporary error (4xx)", "4xx"),
        ("dns", "name does not resolve", "does not resolve (DNS)", "unreachable"),
        ("expired", "no result by 12:00", "did not run in time", "check not run"),
        ("no_agent", "no live agent in DE", "No live agent", "no agent"),
    ],
)
def test_cause_wording_per_error_kind(kind: str, message: str, words: str, short: str) -> None:
    found, text = describe([("FR", kind, message), ("DE", kind, message)])
    assert found == kind
    assert words in text
    assert f"FR: {message}" in text
    assert text.endswith("Seen from DE, FR.")
    assert short in label(kind)


def test_the_most_common_kind_wins_and_an_unknown_one_still_reads() -> None:
    kind, text = describe([("DE", "tls", "x"), ("FR", "dns", "y"), ("US", "dns", "z")])
    assert kind == "dns" and "(FR: y; US: z)" in text
    kind, text = describe([("DE", "gremlins", "")])
    assert (kind, text) == ("gremlins", "The checks fail. Seen from DE.")
    assert label("gremlins") == "failing"


def test_one_line_turns_line_breaks_and_controls_into_spaces() -> None:
    assert one_line("a\r\nb\tc\u2028d\x7f") == "a  b c d "
    assert one_line("Zürich MX (primary)") == "Zürich MX (primary)"


def test_an_agents_message_is_shown_as_strangers_text() -> None:
    """A server's words in an agent's message (a bidirectional override that reorders what a
    reader sees, an escape sequence, a NUL) reach the cause, and so every notice, without
    them."""
    said = "535 \u202egnp.exe\u202c \x1b[31mred\x00 \u2066x\u2069 Zürich"
    _, text = describe([("DE", "auth", said)])
    assert "DE: 535 gnp.exe [31mred x Zürich" in text
    assert not any(ch in text for ch in "\u202e\u202c\u2066\u2069\x1b\x00")
