"""The rule behind "a secret is bound to where it is sent", as a table (pure, no servers):
which fields a change moved a kept secret with. Over HTTP: test_secret_binding.py."""

from typing import Any

import pytest

from controller.monitors.secret_binding import Target, moved, secret

SEALED = "enc:v1:stored-ciphertext"
FRESH = "enc:v1:new-ciphertext"  # what sending the secret again seals to


def smtp(**config: Any) -> dict[str, Any]:
    return {
        "type": "smtp",
        "hostname": "smtp.example.com",
        "port": 587,
        "config": {"auth": {"user": "billing", "pass": SEALED}, **config},
    }


def imap(**config: Any) -> dict[str, Any]:
    return {
        "type": "imap",
        "hostname": "mail.example.com",
        "port": None,
        "config": {"protocol": "imap", "user": "billing", "password": SEALED, **config},
    }


def roundtrip(**config: Any) -> dict[str, Any]:
    send = {"auth": {"user": "billing", "pass": SEALED}, "from": "billing@example.com"}
    receive = {"protocol": "imap", "hostname": "imap.example.net", "password": SEALED}
    return {
        "type": "roundtrip",
        "hostname": "smtp.example.com",
        "port": 587,
        "config": {"send": send, "to": "probe@example.net", "receive": receive, **config},
    }


def auth(user: str = "billing", password: str | None = SEALED) -> dict[str, Any]:
    return {"auth": {"user": user, "pass": password}}


# (stored, after the change, the fields it moved the kept secret with)
TABLE: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("nothing changes", smtp(), smtp(), []),
    ("another server", smtp(), {**smtp(), "hostname": "evil.example"}, ["hostname"]),
    ("another port", smtp(), {**smtp(), "port": 2525}, ["port"]),
    (
        "server and port",
        smtp(),
        {**smtp(), "hostname": "127.0.0.2", "port": 2525},
        ["hostname", "port"],
    ),
    ("implicit TLS", smtp(), smtp(secure=True), ["secure"]),
    ("STARTTLS ignored", smtp(), smtp(ignoreTls=True), ["ignoreTls"]),
    ("TLS required", smtp(), smtp(requireTls=True), ["requireTls"]),
    ("TLS required no more", smtp(requireTls=True), smtp(), ["requireTls"]),
    (
        "certificate unchecked",
        smtp(),
        smtp(tlsOptions={"rejectUnauthorized": False}),
        ["tlsOptions.rejectUnauthorized"],
    ),
    (
        "a TLS option this rule does not know yet, added",
        smtp(),
        smtp(tlsOptions={"servername": "evil.example"}),
        ["tlsOptions.servername"],
    ),
    (
        "a TLS option this rule does not know yet, removed",
        smtp(tlsOptions={"ca": "-----BEGIN CERTIFICATE-----"}),
        smtp(),
        ["tlsOptions.ca"],
    ),
    ("plaintext allowed", smtp(), smtp(allowPlaintextAuth=True), ["allowPlaintextAuth"]),
    ("another user name", smtp(), smtp(**auth("root")), ["auth.user"]),
    (
        "everything at once",
        smtp(),
        {**smtp(secure=True, **auth("x")), "hostname": "h.example", "port": 1},
        ["hostname", "port", "secure", "auth.user"],
    ),
    # Restating what is stored, or spelling out a default, is no change.
    ("defaults spelled out", smtp(), smtp(secure=False, ignoreTls=False, requireTls=False), []),
    ("certificate checked by default", smtp(), smtp(tlsOptions={"rejectUnauthorized": True}), []),
    ("tlsOptions empty", smtp(), smtp(tlsOptions={}), []),
    ("plaintext off by default", smtp(), smtp(allowPlaintextAuth=False), []),
    ("port 25 is SMTP's null port", {**smtp(), "port": None}, {**smtp(), "port": 25}, []),
    (
        "port 465 is null with secure",
        {**smtp(secure=True), "port": 465},
        {**smtp(secure=True), "port": None},
        [],
    ),
    (
        "null port, secure on: 25 → 465",
        {**smtp(), "port": None},
        {**smtp(secure=True), "port": None},
        ["port", "secure"],
    ),
    # Sending the secret again (it seals anew) or dropping it allows any change.
    (
        "secret sent again",
        smtp(),
        {**smtp(**auth("x", FRESH)), "hostname": "evil.example"},
        [],
    ),
    ("secret removed", smtp(), {**smtp(**auth("x", None)), "hostname": "evil.example"}, []),
    ("auth removed", smtp(), {**smtp(), "config": {"auth": None}, "hostname": "e.example"}, []),
    (
        "nothing stored",
        {**smtp(), "config": {}},
        {**smtp(), "config": {}, "hostname": "evil.example"},
        [],
    ),
    # IMAP and POP3.
    ("IMAP: another server", imap(), {**imap(), "hostname": "evil.example"}, ["hostname"]),
    ("IMAP: 143 is IMAP's null port", imap(), {**imap(), "port": 143}, []),
    ("IMAP: 993 is not, without tls", imap(), {**imap(), "port": 993}, ["port"]),
    ("IMAP: tls on, port null", imap(), imap(tls=True), ["port", "tls"]),
    ("IMAP: another user", imap(), imap(user="root"), ["user"]),
    (
        "IMAP: certificate unchecked",
        imap(),
        imap(tlsOptions={"rejectUnauthorized": False}),
        ["tlsOptions.rejectUnauthorized"],
    ),
    ("IMAP: plaintext allowed", imap(), imap(allowPlaintextAuth=True), ["allowPlaintextAuth"]),
    (
        "IMAP → POP3 (the null port moves too)",
        imap(),
        {**imap(protocol="pop3"), "type": "pop3"},
        ["type", "port"],
    ),
    (
        "IMAP → POP3 on a fixed port",
        {**imap(), "port": 1143},
        {**imap(protocol="pop3"), "type": "pop3", "port": 1143},
        ["type"],
    ),
    ("IMAP: password sent again", imap(), {**imap(password=FRESH), "hostname": "e.example"}, []),
    # A round trip's send password also decides whom the probe mail goes to, and as whom.
    ("round trip: another recipient", roundtrip(), roundtrip(to="victim@example.org"), ["to"]),
    (
        "round trip: another sender",
        roundtrip(),
        roundtrip(send={**roundtrip()["config"]["send"], "from": "ceo@example.com"}),
        ["send.from"],
    ),
    (
        "round trip: recipient with the send password sent again",
        roundtrip(),
        roundtrip(
            to="victim@example.org",
            send={**roundtrip()["config"]["send"], "auth": {"user": "billing", "pass": FRESH}},
        ),
        [],
    ),
    ("round trip: folders bind nothing", roundtrip(), roundtrip(slowAfterSeconds=30), []),
]


@pytest.mark.parametrize(
    ("stored", "after", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_which_fields_move_a_kept_secret(
    stored: dict[str, Any], after: dict[str, Any], expected: list[str]
) -> None:
    assert moved(Target.of(stored), Target.of(after)) == expected


def test_the_secret_is_found_where_each_type_keeps_it() -> None:
    assert secret(Target.of(smtp())) == SEALED
    assert secret(Target.of(imap())) == SEALED
    assert secret(Target.of({**imap(), "type": "pop3"})) == SEALED
    assert secret(Target.of({**smtp(), "config": {"auth": None}})) is None
    assert secret(Target.of({**smtp(), "config": None})) is None
    assert secret(Target.of({**imap(), "config": {"password": ""}})) is None
