"""AlertSite bodies → mailprobe's fields, as tables, without a database (the mapping module is
pure; tests/alertsite/ checks the same through the API)."""

from typing import Any, cast

import msgspec
import pytest

from controller.web.alertsite import mapping as m
from controller.web.alertsite.locations import COUNTRY_LOCATION, LOCATIONS
from controller.web.api.errors import ApiError

SMTP, IMAP, POP = (m.EMAIL_TYPES[s] for s in ("email-smtp", "email-imap", "email-pop"))


def body(**fields: Any) -> m.EmailMonitorFields:
    return msgspec.convert(fields, m.EmailMonitorFields)


@pytest.mark.parametrize(
    ("email", "sent", "fields", "ssl"),
    [
        (SMTP, {"name": "n"}, {"name": "n"}, msgspec.UNSET),
        (SMTP, {"hostname": "smtp.example.com"}, {"hostname": "smtp.example.com"}, msgspec.UNSET),
        (
            SMTP,
            {"hostname": "smtps://mx.example.com:465"},
            {"hostname": "mx.example.com", "port": 465},
            True,
        ),
        (SMTP, {"hostname": "smtp://[2001:db8::1]"}, {"hostname": "2001:db8::1"}, False),
        (IMAP, {"hostname": "imaps://imap.example.com"}, {"hostname": "imap.example.com"}, True),
        (
            POP,
            {"hostname": "pop://pop.example.com:110"},
            {"hostname": "pop.example.com", "port": 110},
            False,
        ),
        (SMTP, {"port": "587"}, {"port": 587}, msgspec.UNSET),
        (SMTP, {"port": ""}, {"port": None}, msgspec.UNSET),
        (SMTP, {"interval": 15}, {"check_interval": 900}, msgspec.UNSET),
        (SMTP, {"interval": "2.0"}, {"check_interval": 120}, msgspec.UNSET),
        (SMTP, {"timeout": "30"}, {"timeout_seconds": 30}, msgspec.UNSET),
        (
            SMTP,
            {"locations": [{"id": 20}, {"id": "jp"}, 5010]},
            {"allowed_country_codes": ["GB", "JP", "US"]},
            msgspec.UNSET,
        ),
        (SMTP, {"locations": []}, {"allowed_country_codes": None}, msgspec.UNSET),
        (SMTP, {"ssl": "yes"}, {}, True),
        (SMTP, {"ipv4": "1.2.3.4", "note": "x"}, {}, msgspec.UNSET),  # accepted, ignored
    ],
)
def test_translate(
    email: m.EmailType, sent: dict[str, Any], fields: dict[str, Any], ssl: object
) -> None:
    """Pins: each AlertSite field's value in mailprobe's terms (a scheme in `hostname` sets
    the TLS and may carry the port; location ids map to countries)."""
    out = m.translate(body(**sent), email, None)
    if fields.get("allowed_country_codes"):
        assert sorted(cast(list[str], out.fields.pop("allowed_country_codes"))) == fields.pop(
            "allowed_country_codes"
        )
    assert out.fields == fields
    assert out.ssl == ssl


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        ({"hostname": "ftp://x.example.com"}, "hostname"),
        ({"hostname": "smtp://x.example.com/path"}, "hostname"),
        ({"hostname": "smtp://2001:db8::1"}, "hostname"),
        ({"hostname": "smtp://x.example.com:0"}, "hostname"),
        ({"hostname": "smtps://x.example.com:465", "port": 25}, "port"),
        ({"hostname": "smtps://x.example.com", "ssl": False}, "ssl"),
        ({"port": 70000}, "port"),
        ({"interval": 1.5}, "interval"),
        ({"interval": 0}, "interval"),
        ({"interval": "1e3"}, "interval"),
        ({"timeout": "9" * 20}, "timeout"),
        ({"enabled": "maybe"}, "enabled"),
        ({"locations": [{"id": 99999}]}, "locations"),
        ({"locations": ["XX"]}, "locations"),
    ],
)
def test_bad_values_are_400s_naming_the_field(sent: dict[str, Any], field: str) -> None:
    """Pins: a value the mapping cannot take is a 400 naming the AlertSite field."""
    with pytest.raises(ApiError) as caught:
        m.translate(body(**sent), SMTP, None)
    assert caught.value.status == 400
    assert caught.value.fields == [field]


@pytest.mark.parametrize(
    ("sent", "stored", "seconds"),
    [(1.5, 90, None), ("1.5", 90, None), (2, 90, 120), (15, 900, None), (15, None, 900)],
)
def test_interval_restating_the_stored_one_is_no_change(
    sent: float | str, stored: int | None, seconds: int | None
) -> None:
    """Pins: an interval as GET answers the stored one (1.5 for 90 s) changes nothing."""
    assert m.interval_of(sent, stored) == seconds


@pytest.mark.parametrize(("interval", "timeout", "ok"), [(60, 60, True), (60, 61, False)])
def test_timeout_within_the_interval(interval: int, timeout: int, ok: bool) -> None:
    """Pins: the native rule timeout ≤ interval, refused naming `timeout`."""
    if ok:
        m.check_timeout(interval, timeout)
        return
    with pytest.raises(ApiError) as caught:
        m.check_timeout(interval, timeout)
    assert caught.value.fields == ["timeout"]


@pytest.mark.parametrize(
    ("sent", "fields"),
    [
        ({"enabled": False}, {"status"}),
        ({"note": "x", "ipv4": "1.2.3.4"}, set()),
        ({"name": "n", "locations": []}, {"name", "locations"}),
    ],
)
def test_sent_fields_for_the_readonly_rule(sent: dict[str, Any], fields: set[str]) -> None:
    """Pins: `enabled` is the status (a readonly user may change it); ignored fields count not."""
    assert m.sent_fields(body(**sent)) == fields


@pytest.mark.parametrize(
    ("param", "types"),
    [(None, ["smtp", "imap", "pop3"]), ("email-pop, website", ["pop3"]), ("ping", [])],
)
def test_types_of(param: str | None, types: list[str]) -> None:
    """Pins: AlertSite's type filter → ours; a non-email type matches nothing here."""
    assert m.types_of(param) == types


def test_an_unknown_type_is_a_400() -> None:
    """Pins: an unknown monitor type in the filter is a 400 naming `type`."""
    with pytest.raises(ApiError) as caught:
        m.types_of("email-smtp,nope")
    assert caught.value.fields == ["type"]


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1" * 19, "\uff11\uff12"])  # full-width digits
def test_record_ids_that_are_no_record(raw: str) -> None:
    """Pins: anything but a positive integer id is AlertSite's 404."""
    with pytest.raises(ApiError) as caught:
        m.record_id(raw)
    assert (caught.value.status, caught.value.message) == (404, m.NOT_FOUND)


def test_create_body_maps_enabled_and_credentials() -> None:
    """Pins: `enabled: false` creates a disabled monitor; login/password/ssl become the
    type's config."""
    t = m.translate(
        body(name="n", hostname="imaps://imap.example.com", login="u", password="p", enabled=False),
        IMAP,
        None,
    )
    created = msgspec.to_builtins(m.create_body(t, IMAP))
    assert created["status"] == "disabled"
    assert created["imapPopConfig"] == {
        "protocol": "imap",
        "tls": True,
        "user": "u",
        "password": "p",
    }


def test_locations_read_back_as_their_single_id() -> None:
    """Pins: a country with one AlertSite location reads back as that id; the table holds
    only ISO codes."""
    assert COUNTRY_LOCATION["JP"] == 6050 and "US" not in COUNTRY_LOCATION
    assert all(len(code) == 2 and code.isupper() for _, code in LOCATIONS.values())
