"""`streams-move --from`: the old server's password from a file or the environment, never the
command line (every user of the machine reads it in the process list); a `--from` holding one
is refused before anything connects, and no message shows it."""

import subprocess
import sys
from pathlib import Path

import pytest

from controller.runtime.streams_move import PASSWORD_ENV, SourceError, source_url
from tests.api.test_cli import ROOT


def test_the_password_comes_from_a_file_first_then_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "old-hub.password"
    secret.write_text("p@ss/word:1\n")
    given = "tls://controller@old-1:4222,tls://controller@old-2:4222"
    env = {PASSWORD_ENV: "from-env"}
    assert source_url(given, str(secret), env) == (
        "tls://controller:p%40ss%2Fword%3A1@old-1:4222,tls://controller:p%40ss%2Fword%3A1@old-2:4222"
    )
    assert source_url(given, None, env) == given.replace("controller@", "controller:from-env@")
    assert source_url("nats://old:4222", None, {}) == "nats://old:4222"  # no login at all


@pytest.mark.parametrize(
    ("given", "password_file", "env", "said"),
    [
        ("tls://controller:hunter2@old:4222", None, {}, "holds a password"),
        ("tls://a@x:1,tls://controller:hunter2@old:4222", None, {}, "holds a password"),
        ("tls://old:4222", None, {PASSWORD_ENV: "hunter2"}, "needs the user"),
        ("tls://controller@old:4222", "/nonexistent/pw", {}, "No such file"),
    ],
)
def test_what_is_refused_says_why_without_the_password(
    given: str, password_file: str | None, env: dict[str, str], said: str
) -> None:
    with pytest.raises(SourceError, match=said) as exc:
        source_url(given, password_file, env)
    assert "hunter2" not in str(exc.value)


def test_the_command_refuses_a_password_on_its_command_line_before_connecting() -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "controller", "streams-move",
            "--from", "tls://controller:hunter2@127.0.0.1:1",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={"DATABASE_URL": "postgresql://u@127.0.0.1:1/d", "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--from-password-file" in done.stderr and PASSWORD_ENV in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
