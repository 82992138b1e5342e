"""What may enter a result from servers and exceptions: valid UTF-8, and never a password."""

import base64

import pytest

from agent.probers.redact import job_secrets, publishable, valid_utf8
from shared.messages import SECRET_MASK, ImapPopConfig, SmtpAuth, SmtpConfig
from shared.secret import Secret
from testkit.peers.jobs import make_job


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("220 mail.test ESMTP", "220 mail.test ESMTP"),
        ("220 mail.test Grüße", "220 mail.test Grüße"),
        # what aiosmtplib makes of b"Gr\xfc\xdfe": the bytes come back, decoded with U+FFFD
        ("Gr\udcfc\udcdfe", "Gr\ufffd\ufffde"),
        # a surrogate no decoder made from a byte
        ("a\ud800b", "a?b"),
    ],
)
def test_valid_utf8(text: str, expected: str) -> None:
    assert valid_utf8(text) == expected
    valid_utf8(text).encode("utf-8")


def test_smtp_secrets_are_the_password_as_is_and_as_auth_plain_and_login_send_it() -> None:
    job = make_job("smtp", 25, SmtpConfig(auth=SmtpAuth(user="alice", password=Secret("pw-1"))))
    plain = base64.b64encode(b"\0alice\0pw-1").decode()
    login = base64.b64encode(b"pw-1").decode()
    assert job_secrets(job) == (plain, login, "pw-1")


def test_imap_secrets_include_the_password_as_quoted_in_login() -> None:
    job = make_job("imap", 143, ImapPopConfig(user="alice", password=Secret('a"b')))
    assert job_secrets(job) == ('a\\"b', 'a"b')


@pytest.mark.parametrize(
    "config",
    [SmtpConfig(), SmtpConfig(auth=SmtpAuth(user="alice")), ImapPopConfig(protocol="pop3")],
)
def test_no_password_no_secrets(config: SmtpConfig | ImapPopConfig) -> None:
    job = make_job("smtp" if isinstance(config, SmtpConfig) else "pop3", 25, config)
    assert job_secrets(job) == ()
    assert publishable("nothing to hide", job_secrets(job)) == "nothing to hide"


def test_publishable_masks_every_occurrence_of_every_form() -> None:
    job = make_job("imap", 143, ImapPopConfig(user="alice", password=Secret('a"b')))
    text = 'NO bad LOGIN alice "a\\"b" (a"b, again a"b)'
    assert publishable(text, job_secrets(job)) == (
        f'NO bad LOGIN alice "{SECRET_MASK}" ({SECRET_MASK}, again {SECRET_MASK})'
    )
