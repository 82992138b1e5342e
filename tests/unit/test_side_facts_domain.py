"""A DNS side check's facts are judged only when they are about the monitor's mail domain now:
facts about another domain (a round planned before the user changed `mailDomain`, or an agent
sending facts of its own choosing) judge nothing, neither raising nor clearing a finding; the
same domain written in another case or with a final dot is the same domain."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from controller.monitors.store import Monitor
from controller.posture.facts import Observation, StoredFacts
from controller.sidechecks.findings import Verdicts
from controller.sidechecks.frame import Judging
from controller.sidechecks.registry import SIDE_CHECKS
from shared.messages import SmtpConfig
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.readiness import Readiness, Spf

AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
NOW = "new.example.test"


def monitor(mail_domain: str | None) -> Monitor:
    values: dict[str, object] = {
        "id": 7,
        "public_id": UUID(int=7),
        "organization_id": 1,
        "customer_id": 2,
        "type": "smtp",
        "name": "Relay",
        "hostname": f"mx.{NOW}",
        "port": 25,
        "status": "active",
        "check_interval": 60,
        "timeout_seconds": 10,
        "allowed_country_codes": None,
        "config": SmtpConfig(),
        "notification_email": None,
        "notification_phone_number": None,
        "mail_domain": mail_domain,
        "next_due_at": None,
        "created_at": AT,
        "updated_at": AT,
        "last_checked_at": None,
        "config_as_sent": {},
    }
    return Monitor(**values)  # type: ignore[arg-type]


def holding(verdicts: Verdicts) -> dict[tuple[str, str], bool]:
    return {key: f is not None for key, f in verdicts.items()}


def judged(name: str, facts: Any) -> Verdicts:
    judge = SIDE_CHECKS[name].judge
    assert judge is not None
    row = StoredFacts(scheduled_at=AT, country="DE", banner=f"220 mx.{NOW} ESMTP")
    return judge(Judging(monitor(NOW), row, Observation(country="DE"), facts))


def mail_dns(domain: str) -> MailDns:
    """Nothing published at `domain`: every record missing."""
    return MailDns(domain=domain, mx=[], spf=[], dmarc=[], tls_rpt=[], mta_sts=[])


def readiness(domain: str) -> Readiness:
    return Readiness(domain=domain, spf=Spf(record="v=spf1 +all", all="+all"))


@pytest.mark.parametrize(("name", "facts"), [("mail_dns", mail_dns), ("readiness", readiness)])
def test_facts_about_another_domain_judge_nothing(name: str, facts: Any) -> None:
    raised = {code for (code, _), f in judged(name, facts(NOW)).items() if f is not None}
    assert raised  # about the monitor's domain: judged
    for same in (NOW.upper(), f"{NOW}."):
        assert holding(judged(name, facts(same))) == holding(judged(name, facts(NOW)))
    # Only what the round itself saw is judged (readiness's banner and logins), nothing of DNS.
    elsewhere = {code for code, _ in judged(name, facts("old.example.test"))}
    assert elsewhere <= {"basic_auth_retiring"}, elsewhere
