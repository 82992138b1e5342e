"""Where `apply` and `export` may send the API token (pure): https:// anywhere, plain http://
only to localhost or a loopback address unless --insecure-http, anything else refused; and
what a plain-http API on this machine must prove first (the key `make run` left in .run/)."""

import json
from pathlib import Path

import pytest

from controller.ascode import run_dir
from controller.ascode.api_url import Target, chosen, problem, target


@pytest.mark.parametrize(
    ("api", "insecure_http", "allowed"),
    [
        ("https://mailprobe.example.com", False, True),
        ("https://203.0.113.7:8443/", False, True),
        ("http://127.0.0.1:8080", False, True),
        ("http://127.1.2.3", False, True),
        ("http://localhost:8080", False, True),
        ("http://LOCALHOST.", False, True),
        ("http://[::1]:8080", False, True),
        ("http://[::ffff:127.0.0.1]:8080", False, True),
        ("http://mailprobe.example.com", False, False),
        ("http://10.0.0.5:8080", False, False),
        ("http://[2001:db8::1]", False, False),
        ("http://localhost.evil.example", False, False),  # a name that only starts so
        ("http://127.0.0.1.nip.io", False, False),  # resolves anywhere the name says
        ("http://mailprobe.example.com", True, True),  # the explicit opt-in
        ("ftp://127.0.0.1", False, False),
        ("127.0.0.1:8080", False, False),  # no scheme: no host either
        ("http://", False, False),
        ("http://127.0.0.1:99999", False, False),
        ("https://[::1", False, False),
    ],
)
def test_where_the_token_may_go(api: str, insecure_http: bool, allowed: bool) -> None:
    assert (problem(api, insecure_http=insecure_http) is None) is allowed


def test_the_refusal_names_the_host_and_both_ways_out() -> None:
    why = problem("http://mailprobe.example.com:8080")
    assert why is not None
    assert "mailprobe.example.com" in why and "https://" in why and "--insecure-http" in why


RUN_API = "http://127.0.0.1:8081"
RUN_KEY = "k" * 64


@pytest.mark.parametrize(
    ("given", "variable", "run", "insecure_http", "expected"),
    [
        # make run's API, moved to 8081, found in .run/: it must prove the run's key.
        (None, None, (RUN_API, RUN_KEY), False, (RUN_API, RUN_KEY)),
        # A flag or the variable wins over .run/, and still owes the proof over plain http.
        (
            "http://127.0.0.1:8080",
            None,
            (RUN_API, RUN_KEY),
            False,
            ("http://127.0.0.1:8080", RUN_KEY),
        ),
        (
            None,
            "http://localhost:9000",
            (RUN_API, RUN_KEY),
            False,
            ("http://localhost:9000", RUN_KEY),
        ),
        (
            "http://127.0.0.1:8080",
            "http://localhost:9000",
            None,
            False,
            ("http://127.0.0.1:8080", None),
        ),
        # https: TLS checks the server; --insecure-http: the user skips the check.
        (
            "https://mailprobe.example.com",
            None,
            (RUN_API, RUN_KEY),
            False,
            ("https://mailprobe.example.com", None),
        ),
        (None, None, (RUN_API, RUN_KEY), True, (RUN_API, None)),
        # No run here: the token goes only to an API the user named, never to the default.
        (None, "http://127.0.0.1:8080", None, False, ("http://127.0.0.1:8080", None)),
        (None, None, None, False, "no API named"),
        # A run that left only its key (endpoints.json lost): the default, with the proof.
        (None, None, (None, RUN_KEY), False, ("http://127.0.0.1:8080", RUN_KEY)),
        # The old rule stays: plain http elsewhere only with --insecure-http.
        ("http://mailprobe.example.com", None, (RUN_API, RUN_KEY), False, "unencrypted"),
    ],
)
def test_which_api_and_what_it_must_prove(
    tmp_path: Path,
    given: str | None,
    variable: str | None,
    run: tuple[str | None, str] | None,
    insecure_http: bool,
    expected: tuple[str, str | None] | str,
) -> None:
    env = {"MAILPROBE_RUN_DIR": str(tmp_path)}
    if variable:
        env["MAILPROBE_API"] = variable
    if run is not None:
        api, key = run
        if api is not None:
            (tmp_path / "endpoints.json").write_text(json.dumps({"api": api, "nats": "nats://x"}))
        (tmp_path / "instance.key").write_text(key + "\n")
    found = target(given, env, insecure_http=insecure_http)
    if isinstance(expected, str):
        assert isinstance(found, str) and expected in found
    else:
        assert found == Target(*expected)


def test_a_broken_run_folder_counts_as_none(tmp_path: Path) -> None:
    (tmp_path / "endpoints.json").write_text("{not json")
    env = {"MAILPROBE_RUN_DIR": str(tmp_path)}
    assert run_dir.read(env) is None
    assert chosen(None, env) == "http://127.0.0.1:8080"
