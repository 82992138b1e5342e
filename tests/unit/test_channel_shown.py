"""What a channel's URL shows (controller.notify.channel_shown), as a table: whole only when it
cannot hold a credential (its kind's default, or nothing after scheme://host[:port]); else the
scheme, host and port and the mask. What is shown shows itself (so an export applies as is),
and the moving of a bound secret is judged against it (controller.notify.channel_binding)."""

import pytest

from controller.notify import channel_kinds
from controller.notify.channel_binding import moves_secret
from controller.notify.channel_shown import secret_parts, shown_url

M = "********"

TABLE = [
    # nothing after the host: shown whole
    ("webhook", "https://hooks.example.test", "https://hooks.example.test"),
    ("webhook", "https://hooks.example.test/", "https://hooks.example.test/"),
    ("alertmanager", "http://10.0.0.5:9093", "http://10.0.0.5:9093"),
    ("alertmanager", "https://[2001:db8::1]:9093/", "https://[2001:db8::1]:9093/"),
    # each kind's default URL: shown whole, path and all
    ("pagerduty", channel_kinds.DEFAULT_URL["pagerduty"], channel_kinds.DEFAULT_URL["pagerduty"]),
    ("opsgenie", channel_kinds.DEFAULT_URL["opsgenie"], channel_kinds.DEFAULT_URL["opsgenie"]),
    ("telegram", channel_kinds.DEFAULT_URL["telegram"], channel_kinds.DEFAULT_URL["telegram"]),
    # another kind's default is no default here
    ("webhook", channel_kinds.DEFAULT_URL["pagerduty"], f"https://events.pagerduty.com/{M}"),
    # a query, a path, a fragment: masked
    ("webhook", "https://h.example.test/hooks?token=tok-1", f"https://h.example.test/{M}"),
    ("webhook", "https://h.example.test/?token=tok-1", f"https://h.example.test/{M}"),
    ("webhook", "https://h.example.test?token=tok-1", f"https://h.example.test/{M}"),
    ("webhook", "https://discord.test/api/webhooks/1/tok-1", f"https://discord.test/{M}"),
    ("webhook", "https://h.example.test/#tok-1", f"https://h.example.test/{M}"),
    (
        "pagerduty",
        "https://events.pagerduty.com/v2/enqueue?x=tok-1",
        f"https://events.pagerduty.com/{M}",
    ),
    ("opsgenie", "https://api.eu.opsgenie.com/tok-1", f"https://api.eu.opsgenie.com/{M}"),
    # user info: masked, host and port kept
    ("alertmanager", "https://am:tok-1@am.example.test/", f"https://am.example.test/{M}"),
    ("alertmanager", "https://tok-1@am.example.test:9093", f"https://am.example.test:9093/{M}"),
    ("alertmanager", "https://:tok-1@am.example.test", f"https://am.example.test/{M}"),
    ("alertmanager", "https://a:b@c@am.example.test/", f"https://am.example.test/{M}"),
    # IPv6 hosts keep their brackets, ports are kept
    ("webhook", "https://[2001:db8::1]/tok-1", f"https://[2001:db8::1]/{M}"),
    ("webhook", "https://[2001:db8::1]:8443/x?t=tok-1", f"https://[2001:db8::1]:8443/{M}"),
    ("webhook", "http://127.0.0.1:9/hooks?token=tok-1", f"http://127.0.0.1:9/{M}"),
    ("telegram", "https://tg.example.test:8443/bot", f"https://tg.example.test:8443/{M}"),
    # what is not a URL with a plain host shows nothing of itself
    ("webhook", "https://[::1/tok-1", M),
    ("webhook", "https://h.example.test:99999999/tok-1", M),
    ("webhook", "https://h\\tok-1.example.test/", M),
    ("webhook", "ftp://h.example.test/tok-1", M),
    ("webhook", "tok-1", M),
    ("webhook", "", M),
    # Slack's and Teams' URL is the credential: masked whatever it holds
    ("slack", "https://hooks.slack.com/services/T0/B0/tok-1", f"https://hooks.slack.com/{M}"),
    ("teams", "https://x.webhook.office.com", f"https://x.webhook.office.com/{M}"),
]


@pytest.mark.parametrize(("kind", "url", "shown"), TABLE)
def test_a_channels_url_shows(kind: str, url: str, shown: str) -> None:
    assert shown_url(kind, url) == shown
    assert "tok-1" not in shown
    assert shown_url(kind, shown) == shown or shown == M  # what is shown shows itself


@pytest.mark.parametrize(
    ("url", "secret_sent", "moves"),
    [
        (None, False, False),  # not sent: kept
        (f"https://h.example.test/{M}", False, False),  # the shown URL sent back: kept
        ("https://h.example.test/hooks?token=tok-1", False, False),  # the stored URL itself
        ("https://h.example.test/hooks?token=tok-2", False, True),  # another token, same host
        ("https://other.example.test/", False, True),
        ("https://other.example.test/", True, False),  # sent with its secret
    ],
)
def test_a_masked_url_keeps_the_secret_where_it_is(
    url: str | None, secret_sent: bool, moves: bool
) -> None:
    stored = "https://h.example.test/hooks?token=tok-1"
    shown = shown_url("webhook", stored)
    assert moves_secret("webhook", True, shown, stored, url, secret_sent) is moves


@pytest.mark.parametrize(
    ("url", "hidden", "kept"),
    [
        ("https://h.example.test/api/webhooks/12345/tok-1", ["tok-1", "12345"], ["h.example.test"]),
        ("https://h.example.test/in?token=tok-1&x=y", ["tok-1", "token"], ["h.example.test"]),
        ("https://u:pass-1@h.example.test:8443/", ["pass-1"], ["https", "h.example.test"]),
        ("https://h.example.test/a%2Ftok-1", ["a%2Ftok-1", "a/tok-1"], ["h.example.test"]),
    ],
)
def test_a_masked_urls_secret_parts(url: str, hidden: list[str], kept: list[str]) -> None:
    parts = secret_parts(url)
    assert url in parts and parts == sorted(parts, key=len, reverse=True)
    assert set(hidden) <= set(parts) and not set(kept) & set(parts)
