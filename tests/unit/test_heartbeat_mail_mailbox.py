"""Which mailbox the agent's heartbeat mail side check reads for a round (agent.sidechecks.
heartbeat_mail.mailbox_of), as a table: an IMAP or POP3 monitor's at the job's server and the
port it checked, a round trip's mailbox leg at its own server (the job's when it names none)
and port (its API's, its protocol's), at most FOLDERS_MAX folders; none for SMTP."""

from datetime import UTC, datetime
from typing import TypedDict

import pytest

from agent.probers.redact import job_secrets
from agent.probers.run import build_result
from agent.sidechecks.base import Round
from agent.sidechecks.heartbeat_mail import _published, mailbox_of
from shared.messages import (
    CheckJob,
    ImapCheckJob,
    ImapPopConfig,
    Pop3CheckJob,
    RoundTripCheckJob,
    RoundTripConfig,
    RoundTripReceive,
    SmtpCheckJob,
)
from shared.secret import SECRET_MASK, Secret
from shared.sidechecks.heartbeat_mail import FOLDERS_MAX, Looked

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class _Base(TypedDict):
    job_id: str
    monitor_id: str
    hostname: str
    country: str
    scheduled_at: str
    expires_at: str


BASE: _Base = {
    "job_id": "8b0b8e9e-9f3c-4d55-9a1b-2f6c7d8e9f01",
    "monitor_id": "0b9f3c1e-8a42-4d55-9a1b-2f6c7d8e9f01",
    "hostname": "mx.example.org",
    "country": "DE",
    "scheduled_at": "2026-03-01T12:00:00.000Z",
    "expires_at": "2026-03-01T12:10:00.000Z",
}
FOLDERS = ["INBOX", "Archive", "Reports", "Old"]


def at(job: CheckJob, port: int) -> Round:
    return Round(job, build_result(job, "DE-1", None, "ok", AT), port, None)


@pytest.mark.parametrize(
    ("job", "port", "read"),
    [
        (
            ImapCheckJob(**BASE, config=ImapPopConfig(user="a")),
            993,
            ("imap", "mx.example.org", 993, ["INBOX"]),
        ),
        (
            Pop3CheckJob(**BASE, config=ImapPopConfig(protocol="pop3")),
            995,
            ("pop3", "mx.example.org", 995, ["INBOX"]),
        ),
        (
            RoundTripCheckJob(
                **BASE,
                config=RoundTripConfig(
                    receive=RoundTripReceive(hostname="imap.example.org", tls=True, folders=FOLDERS)
                ),
            ),
            587,
            ("imap", "imap.example.org", 993, FOLDERS[:FOLDERS_MAX]),
        ),
        (
            RoundTripCheckJob(
                **BASE, config=RoundTripConfig(receive=RoundTripReceive(api="graph"))
            ),
            587,
            ("imap", "mx.example.org", 443, ["INBOX"]),
        ),
    ],
)
def test_the_mailbox_a_round_reads(
    job: CheckJob, port: int, read: tuple[str, str, int, list[str]]
) -> None:
    box = mailbox_of(at(job, port))
    assert box is not None
    got = (box.receive.protocol, box.receive.hostname, box.port, box.receive.folders)
    assert got == read


def test_an_smtp_round_reads_no_mailbox() -> None:
    assert mailbox_of(at(SmtpCheckJob(**BASE), 25)) is None


def test_a_looks_error_never_carries_the_jobs_secret() -> None:
    """A server that echoes the password in its refusal: the look's error masks it."""
    job = ImapCheckJob(**BASE, config=ImapPopConfig(user="a", password=Secret("hunter2-pw")))
    looked = Looked(monitor_id="m", error_kind="auth", error="NO [AUTH] bad hunter2-pw for a")
    shown = _published(looked, job_secrets(job))
    assert "hunter2-pw" not in shown.error and SECRET_MASK in shown.error
    assert _published(Looked(monitor_id="m"), job_secrets(job)).error == ""
