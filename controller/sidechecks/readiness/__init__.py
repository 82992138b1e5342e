"""Mail-authentication readiness (issue 67): SPF's lookup budget, DMARC by RFC 9989's Tree Walk,
DKIM keys, and password logins to Microsoft 365 and Google, asked on the DNS cadence from every
country of a monitor with a mail domain or a password login, judged by `rules`; its facts kept
by job id in `side_readiness`; each organization's DNS queries for it bounded per hour and
country as admission reserves its rounds, in turn (`budget`)."""

from typing import TYPE_CHECKING, Final

from controller.sidechecks.findings import Verdicts
from controller.sidechecks.frame import ControllerSideCheck, Judging, Planning, of_mail_domain
from controller.sidechecks.readiness import rules
from shared.messages import PASSWORD_LOGIN, ImapPopConfig, JobConfig, RoundTripConfig, SmtpConfig
from shared.sidechecks.readiness import WIRE, Readiness, ReadinessAsk, bounded

if TYPE_CHECKING:
    from controller.monitors.store import Monitor

# The selectors read beside those a monitor lists (`dkimSelectors`) and those a round trip's
# message is signed with (the agent adds them): those the large providers publish (Google
# Workspace, Microsoft 365, Mailchimp/Mandrill) and common self-hosted defaults.
COMMON_SELECTORS: Final = ("google", "selector1", "selector2", "k1", "default", "dkim", "s1", "s2")


def password_logins(config: JobConfig, hostname: str) -> list[tuple[str, str]]:
    """What of a monitor logs in with a password, and to which host."""
    out: list[tuple[str, str]] = []
    if isinstance(config, SmtpConfig):
        if config.auth is not None and config.auth.mechanism == PASSWORD_LOGIN:
            out.append(("SMTP AUTH", hostname))
    elif isinstance(config, ImapPopConfig):
        if config.mechanism == PASSWORD_LOGIN and config.user:
            out.append((config.protocol.upper(), hostname))
    elif isinstance(config, RoundTripConfig):
        send = config.send
        if send.auth is not None and send.auth.mechanism == PASSWORD_LOGIN:
            out.append(("SMTP AUTH", hostname))
        receive = config.receive
        if receive.mechanism == PASSWORD_LOGIN and receive.user:
            out.append((receive.protocol.upper(), receive.hostname or hostname))
    return out


def watched(monitor: "Monitor") -> bool:
    return bool(monitor.mail_domain) or bool(password_logins(monitor.config, monitor.hostname))


def ask(p: Planning) -> ReadinessAsk | None:
    """The round's ask: the mail domain and its selectors (admission may hold it: `budget`)."""
    if not p.dns_due or not watched(p.monitor):
        return None
    domain = p.monitor.mail_domain or ""
    if not domain:
        return ReadinessAsk()  # the round's own facts only: no query
    return ReadinessAsk(domain=domain, selectors=selectors(p.monitor))


def selectors(monitor: "Monitor") -> list[str]:
    """The selectors asked: the monitor's listed ones first, then the common ones, each once
    (the agent reads the signing ones first and at most SELECTORS_MAX in all)."""
    return list(dict.fromkeys([*(monitor.dkim_selectors or ()), *COMMON_SELECTORS]))


def judge(j: Judging[Readiness]) -> Verdicts:
    m, facts, cc = j.monitor, j.facts, j.row.country
    verdicts: Verdicts = {}
    mx = None
    # The DNS verdicts only of facts about the monitor's mail domain now (the round's own
    # facts, its banner and login, whatever the domain).
    if of_mail_domain(m, facts.domain):
        verdicts = rules.readiness(facts, cc, j.row.scheduled_at)
        mx = facts.mx if rules.believed(facts.canaries) else None
    verdicts |= rules.basic_auth(password_logins(m.config, m.hostname), mx, j.row.banner, cc)
    return verdicts


SIDE_CHECK: Final = ControllerSideCheck(
    name=WIRE.name,
    title="Mail authentication readiness",
    codes={**rules.CODES, **rules.DRIFT_CODES},
    watched=watched,
    wire=WIRE,
    ask=ask,
    judge=judge,
    bound=bounded,
    canaries=lambda facts: facts.canaries,
)
