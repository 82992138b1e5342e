"""Where `apply` and `export` may send the API token (pure): https:// anywhere, plain http://
only to localhost or a loopback address unless --insecure-http, anything else refused."""

import pytest

from controller.ascode.api_url import problem


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
