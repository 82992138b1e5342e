"""The console renderer writes colour codes to a terminal only: a log piped or written to a file
(`make run > run.log`) stays plain text, and NO_COLOR turns them off on a terminal too."""

import os
import pty
import subprocess
import sys

import pytest

LOG_A_LINE = (
    "import structlog; from shared.logging import configure;"
    " configure('console', 'INFO'); structlog.get_logger('t').info('hello', monitor='m')"
)
ESC = b"\x1b["


def _stderr_of(to_terminal: bool, **env: str) -> bytes:
    """What one log line wrote to stderr, a pipe or a pseudo-terminal."""
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
    if not to_terminal:
        run = subprocess.run(
            [sys.executable, "-c", LOG_A_LINE], capture_output=True, env=environ, timeout=30
        )
        return run.stderr
    leader, follower = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-c", LOG_A_LINE], stderr=follower, env=environ, timeout=30, check=True
        )
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other side closed: all read
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        os.close(leader)


def test_a_terminal_gets_colours() -> None:
    """The oracle first: the same line to a terminal does carry colour codes."""
    out = _stderr_of(to_terminal=True)
    assert b"hello" in out and ESC in out, out


@pytest.mark.parametrize(
    ("to_terminal", "env"),
    [(False, {}), (True, {"NO_COLOR": "1"})],
    ids=["pipe", "terminal with NO_COLOR"],
)
def test_no_colour_codes_off_a_terminal_or_with_no_color(
    to_terminal: bool, env: dict[str, str]
) -> None:
    out = _stderr_of(to_terminal, **env)
    assert b"hello" in out and ESC not in out, out
